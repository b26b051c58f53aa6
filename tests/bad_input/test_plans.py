"""Bad plans: mutations of the shipped plans (Hypothesis) through the loader and the NCA renderer,
and a curated corpus through `drctl validate` as a user runs it. Every one ends in a plan problem
(``FILE: where: message``, exit 1) within seconds, never a traceback or a hang."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given

from drctl.errors import DrctlError
from drctl.nca.render import render_bundle
from drctl.plan.load import PlanInvalid, check_document, load_plan
from drctl.plan.model import plan_from_dict
from tests.bad_input.mutations import (
    CORPUS,
    ROOT,
    assert_clean_failure,
    drctl,
    mutated_document,
    mutated_text,
)

ACME_TEXT = (ROOT / "recovery_plans" / "acme.yaml").read_text()
ACME = yaml.safe_load(ACME_TEXT)
PSK = "corpus-psk-0123456789abcdef"
TIME_BOUND_S = 10  # per case, on a loaded 2-core machine; typically well under a second


def render_every_site(plan) -> None:
    for site in plan.sites:
        try:
            render_bundle(plan, site.name, PSK, "198.51.100.1")
        except DrctlError:
            pass  # refusing a plan is fine; anything else is not


@CORPUS
@given(mutated_document(ACME))
def test_mutated_plan_documents_are_problems_or_plans(doc) -> None:
    problems = check_document(doc, "acme.yaml")
    assert all(p.file == "acme.yaml" and p.where and p.message for p in problems)
    if not problems:
        render_every_site(plan_from_dict(doc))


@CORPUS
@given(mutated_text(ACME_TEXT))
def test_mutated_plan_texts_load_or_are_plan_invalid(tmp_path_factory, text: str) -> None:
    f = tmp_path_factory.mktemp("plan") / "acme.yaml"
    f.write_text(text)
    try:
        plan = load_plan(f)
    except PlanInvalid as e:
        assert e.problems and all(p.file == str(f) for p in e.problems)
    else:
        render_every_site(plan)


# ---- the curated corpus, through the CLI ----------------------------------------------------------


def laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nservers: *a{levels}\n"


def chain_plan(n: int) -> str:
    """``n`` servers, each depending on the next one: the longest dependency walk there is."""
    doc = yaml.safe_load((ROOT / "recovery_plans" / "demo.yaml").read_text())
    lan = doc["sites"][0]["subnets"][0]
    lan["cidr"], lan["gateway"] = "10.0.0.0/16", "10.0.0.1"
    template = doc["servers"][0]
    doc["servers"] = [
        dict(
            template,
            name=f"s{i}",
            nics=[{"subnet": "paris/lan", "ip": f"10.0.{(i + 2) // 256}.{(i + 2) % 256}"}],
            boot={"group": 1, "depends_on": [f"s{i + 1}"] if i + 1 < n else []},
        )
        for i in range(n)
    ]
    return yaml.safe_dump(doc)


def _missing_fields() -> str:
    doc = yaml.safe_load(ACME_TEXT)
    del doc["client"], doc["contacts"], doc["servers"][0]["rto"], doc["servers"][0]["flavor"]
    return yaml.safe_dump(doc)


TEXT_CASES: dict[str, tuple[str | bytes, str]] = {
    # name: (file content, what the first problem line must say)
    "alias-bomb": (laughs(), "values once aliases are expanded"),
    "recursive-alias": ("servers: &s [*s]\n", "refers to a value that contains it"),
    "deep-flow": ("servers: " + "[" * 50_000 + "]" * 50_000 + "\n", "nest"),
    "deep-block": ("".join("  " * i + f"k{i}:\n" for i in range(2000)), "nested more than 64 levels"),
    "list-key": ("client: {id: a}\n? [x, y]\n: 1\n", "a key must be plain text"),
    "mapping-key": ("{a: 1}: 1\n", "a key must be plain text"),
    "int-key": ("client:\n  7: x\n", "key '7' is read as int, not text; quote it"),
    "bool-key": ("yes: 1\n", "key 'yes' is read as bool, not text; quote it"),
    "duplicate-key": ("client: {id: a}\nclient: {id: b}\n", "duplicate key 'client'"),
    "python-tag": ("client: !!python/object/apply:os.system [id]\n", "could not determine a constructor"),
    "undefined-alias": ("client: *nowhere\n", "found undefined alias"),
    "tab-indent": ("client:\n\tid: a\n", "YAML syntax error"),
    "not-utf8": ("client:\n  name: Soci\xe9t\xe9\n".encode("latin-1"), "not UTF-8 text"),
    "binary": (bytes(range(256)) * 4, "not UTF-8 text"),
    "empty": ("", "a plan is a YAML mapping"),
    "scalar": ("just words\n", "a plan is a YAML mapping"),
    "missing-fields": (_missing_fields(), "client: required field is missing"),
}


def _cases(tmp: Path) -> list[tuple[str, Path, str]]:
    out = []
    for name, (content, expect) in TEXT_CASES.items():
        f = tmp / f"{name}.yaml"
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        out.append((name, f, expect))
    directory = tmp / "directory.yaml"
    directory.mkdir()
    out.append(("directory", directory, "it is a directory"))
    fifo = tmp / "fifo.yaml"
    os.mkfifo(fifo)
    out.append(("fifo", fifo, "not a regular file"))
    big = tmp / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse
    out.append(("oversized", big, "a plan is at most 10.0 MiB"))
    out.append(("device", Path("/dev/zero"), "not a regular file"))
    out.append(("missing", tmp / "missing.yaml", "No such file or directory"))
    return out


@pytest.fixture(scope="module")
def plan_cases(tmp_path_factory) -> list[tuple[str, Path, str]]:
    return _cases(tmp_path_factory.mktemp("plans"))


def test_every_curated_bad_plan_is_one_clear_problem_within_seconds(plan_cases) -> None:
    files = [str(f) for _, f, _ in plan_cases]
    r, took = drctl("validate", *files, timeout=60)
    assert r.returncode == 1
    assert_clean_failure(r, files=tuple(files))
    assert took < TIME_BOUND_S * 2, f"{len(files)} bad plans took {took:.1f}s"
    lines = r.stderr.splitlines()
    for name, f, expect in plan_cases:
        mine = [line for line in lines if line.startswith(f"{f}: ")]
        assert mine, f"{name}: no problem reported for {f}"
        assert expect in mine[0], f"{name}: {mine[0]!r} does not say {expect!r}"


def test_each_missing_required_field_is_named(plan_cases) -> None:
    f = next(f for name, f, _ in plan_cases if name == "missing-fields")
    r, _ = drctl("validate", str(f))
    missing = [
        line.split(": ")[1] for line in r.stderr.splitlines() if line.endswith("required field is missing")
    ]
    assert missing == ["client", "contacts", "servers[0].flavor", "servers[0].rto"]


@pytest.mark.parametrize("name", ["alias-bomb", "deep-flow", "oversized", "fifo"])
def test_the_costliest_cases_alone_take_seconds_not_minutes(plan_cases, name: str) -> None:
    f = next(f for n, f, _ in plan_cases if n == name)
    r, took = drctl("validate", str(f))
    assert_clean_failure(r, files=(str(f),))
    assert r.returncode == 1 and took < TIME_BOUND_S, f"{name}: {took:.1f}s"
    js, _ = drctl("validate", "--json", str(f))
    assert js.returncode == 1 and "Traceback" not in js.stderr
    [result] = json.loads(js.stdout)["plans"]
    assert result["ok"] is False and result["problems"][0]["file"] == str(f)


def test_a_long_dependency_chain_validates_within_seconds(tmp_path: Path) -> None:
    f = tmp_path / "chain.yaml"
    f.write_text(chain_plan(1500))
    r, took = drctl("validate", str(f))
    assert r.returncode == 0, r.stderr[-2000:]
    assert took < TIME_BOUND_S
