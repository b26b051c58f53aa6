"""Reading user files: regular files only, a size cap, and YAML that cannot blow up (alias bombs,
runaway nesting, keys that are not text), with both parsers drctl may run on."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from drctl.input_files import (
    MAX_DEPTH,
    MAX_INPUT_BYTES,
    MAX_NODES,
    InputFileError,
    _loader_class,
    is_missing,
    parse_yaml,
    read_input_text,
)

ROOT = Path(__file__).resolve().parents[1]
LOADERS = [pytest.param(_loader_class(fast=False), id="pyyaml")]
if yaml.__with_libyaml__:
    LOADERS.append(pytest.param(_loader_class(fast=True), id="libyaml"))


def laughs(levels: int = 9, width: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nservers: *a{levels}\n"


def refusal(text: str, loader: type) -> InputFileError:
    t0 = time.monotonic()
    with pytest.raises(InputFileError) as e:
        parse_yaml(text, "f.yaml", loader=loader)
    assert time.monotonic() - t0 < 5, "a refusal must come within seconds"
    assert e.value.message.startswith("f.yaml: ")
    return e.value


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("name", ["demo", "acme"])
def test_real_plans_read_as_safe_load_reads_them(loader: type, name: str) -> None:
    text = (ROOT / "recovery_plans" / f"{name}.yaml").read_text()
    assert parse_yaml(text, name, loader=loader) == yaml.safe_load(text)


@pytest.mark.parametrize("loader", LOADERS)
def test_alias_bomb_is_refused_at_the_alias(loader: type) -> None:
    e = refusal(laughs(), loader)
    assert e.where.startswith("line 6, ") and "aliases are expanded" in e.reason


@pytest.mark.parametrize("loader", LOADERS)
def test_a_few_aliases_are_fine(loader: type) -> None:
    doc = parse_yaml("vpn: &v {ike: v2}\nsites: [{vpn: *v}, {vpn: *v}]\n", "f", loader=loader)
    assert doc["sites"] == [{"vpn": {"ike": "v2"}}, {"vpn": {"ike": "v2"}}]


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        "".join("  " * i + f"k{i}:\n" for i in range(3000)),
        "- " * 5000 + "x\n",
    ],
    ids=["flow", "block-mapping", "block-sequence"],
)
def test_deep_nesting_is_refused(loader: type, text: str) -> None:
    e = refusal(text, loader)
    assert "nest" in e.reason and e.where.startswith("line ")


@pytest.mark.parametrize("loader", LOADERS)
def test_nesting_up_to_the_limit_is_read(loader: type) -> None:
    doc = parse_yaml("[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1), "f", loader=loader)
    for _ in range(MAX_DEPTH - 1):
        doc = doc[0]
    assert doc == 1


@pytest.mark.parametrize("fast", [False, True] if yaml.__with_libyaml__ else [False])
def test_a_runaway_list_stops_at_the_value_limit(fast: bool) -> None:
    e = refusal("a: [" + ",".join(["1"] * 2000) + "]\n", _loader_class(fast, max_nodes=1000))
    assert e.where == "line 1, column 2003" and "more than 1000 values" in e.reason


def test_a_runaway_file_is_refused_within_seconds() -> None:
    t0 = time.monotonic()
    with pytest.raises(InputFileError, match=f"more than {MAX_NODES} values"):
        parse_yaml("a: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n", "f.yaml")
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(
    "text, where, reason",
    [
        ("? [a, b]\n: 1\n", "line 1, column 3", "a key must be plain text, not a list or a mapping"),
        ("? {a: 1}\n: 1\n", "line 1, column 3", "a key must be plain text, not a list or a mapping"),
        ("x:\n  1: a\n", "line 2, column 3", "key '1' is read as int, not text; quote it"),
        ("on: true\n", "line 1, column 1", "key 'on' is read as bool, not text; quote it"),
        ("a: 1\nb: 2\na: 3\n", "line 3, column 1", "duplicate key 'a' (first at line 1)"),
        ("a: &a [*a]\n", "line 1, column 8", "alias *a refers to a value that contains it"),
        ("a: !!python/object:os.system x\n", "line 1, column 4", "could not determine a constructor"),
        ("a: *nowhere\n", "line 1, column 4", "found undefined alias 'nowhere'"),
    ],
)
def test_keys_and_aliases_that_cannot_be_json_are_refused_with_their_line(
    loader: type, text: str, where: str, reason: str
) -> None:
    e = refusal(text, loader)
    assert e.where == where and reason in e.reason


@pytest.mark.parametrize("loader", LOADERS)
def test_merge_keys_merge_and_own_keys_win(loader: type) -> None:
    doc = parse_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n", "f", loader=loader)
    assert doc["c"] == {"x": 3, "y": 2}


def test_syntax_errors_keep_pyyaml_wording() -> None:
    with pytest.raises(InputFileError) as exc:
        parse_yaml("a: {b: 1\nc: d\n", "f.yaml")
    e = exc.value
    assert e.reason.startswith("YAML syntax error: expected ',' or '}', but got")


def test_directory_fifo_and_device_are_named_not_read(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="it is a directory; give the path of the plan file itself"):
        read_input_text(tmp_path, what="plan")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = threading.Event()

    def read_fifo() -> None:
        with pytest.raises(InputFileError, match="not a regular file"):
            read_input_text(fifo, what="plan")
        done.set()

    threading.Thread(target=read_fifo, daemon=True).start()
    assert done.wait(5), "opening a FIFO must not wait for a writer"
    with pytest.raises(InputFileError, match="not a regular file"):
        read_input_text("/dev/zero", what="plan")


def test_missing_file_is_told_apart(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as e:
        read_input_text(tmp_path / "nope.yaml", what="stack file")
    assert is_missing(e.value)
    assert e.value.reason == "cannot read the stack file: No such file or directory"
    with pytest.raises(InputFileError) as e:
        read_input_text(tmp_path, what="stack file")
    assert not is_missing(e.value)


def test_size_cap_refuses_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(MAX_INPUT_BYTES + 1)  # sparse: costs no disk
    t0 = time.monotonic()
    with pytest.raises(InputFileError) as e:
        read_input_text(big, what="plan")
    assert time.monotonic() - t0 < 1
    assert (
        e.value.reason
        == "cannot read the plan: it is 10.0 MiB, a plan is at most 10.0 MiB; is this the right file?"
    )
    ok = tmp_path / "ok.yaml"
    ok.write_text("a: 1\n")
    assert read_input_text(ok, what="plan", max_bytes=5) == "a: 1\n"


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes("a: 1\nname: Société\n".encode("latin-1"))
    with pytest.raises(InputFileError) as e:
        read_input_text(f, what="plan")
    assert e.value.where == "line 2" and "not UTF-8" in e.value.reason


def test_absurdly_nested_json_from_a_store_is_a_malformed_document():
    from drctl.input_files import loads_json

    assert loads_json(b'{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_json(b"[" * 100_000)
