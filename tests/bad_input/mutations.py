"""Hypothesis strategies that turn a valid input into a bad one: documents (what YAML or JSON can
hold, as the parsers hand it over) with values replaced, removed, added or duplicated, and texts
with lines cut, repeated or edited with the characters YAML gives meaning to.

Also the one check every corpus test makes of a drctl subprocess (:func:`assert_clean_failure`)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from drctl.errors import (
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_LOCAL_IO,
    EXIT_LOCKED,
    EXIT_MISSING_TOOL,
    EXIT_OK,
    EXIT_REPO_MISSING,
    EXIT_RUN_FAILED,
    EXIT_STORAGE,
    EXIT_USAGE,
    EXIT_WRONG_PASSWORD,
)

ROOT = Path(__file__).resolve().parents[2]

# Every exit code README and drctl.errors document.
DOCUMENTED_EXITS = {
    EXIT_OK,
    EXIT_INVALID,
    EXIT_USAGE,
    EXIT_REPO_MISSING,
    EXIT_LOCKED,
    EXIT_WRONG_PASSWORD,
    EXIT_INTEGRITY,
    EXIT_STORAGE,
    EXIT_LOCAL_IO,
    EXIT_MISSING_TOOL,
    EXIT_RUN_FAILED,
    EXIT_INTERRUPTED,
}

# The corpus's Hypothesis settings (applied per test, not as a global profile): deterministic in CI,
# the same examples every run, so a failure is reproducible from the log; HYPOTHESIS_PROFILE=explore
# runs many more, randomly, to look for new failures. ``deadline`` is each example's time bound.
_EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"
CORPUS = settings(
    max_examples=2000 if _EXPLORE else 60,
    derandomize=not _EXPLORE,
    database=None,
    deadline=dt.timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

# Values a YAML or JSON parser can hand over, the awkward ones first.
AWKWARD = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        2**63,
        -(10**30),
        1e400,
        float("nan"),
        "",
        " ",
        "0",
        "-1",
        "1e400",
        "../../etc/passwd",
        "a\x00b",
        "x" * 5000,
        "\u202e\ufeff",
        "24h",
        "0s",
        "999999999w",
        "10.0.0.1",
        "::1",
        "0.0.0.0/0",
        "256.1.1.1",
        "true",
        "2026-01-01T00:00:00",
        "2026-02-30T00:00:00Z",
        "9999-12-31T23:59:59+14:00",
        dt.date(2026, 1, 1),
        dt.datetime(2026, 1, 1, 12, 0),
        b"\x00\xff",
        (1, 2),
        frozenset({"a"}),
    ]
)
SCALARS = st.one_of(
    AWKWARD,
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


def _paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _parent(doc: Any, path: tuple) -> Any:
    for p in path[:-1]:
        doc = doc[p]
    return doc


@st.composite
def mutated_document(draw: st.DrawFn, base: Any, *, edits: int = 3) -> Any:
    """``base`` (a JSON-like document) after 1..``edits`` random edits at random places."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, edits))):
        path = draw(st.sampled_from(list(_paths(doc))))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "duplicate", "wrap"]))
        if not path:
            if op == "replace":
                doc = draw(VALUES)
            continue
        parent, last = _parent(doc, path), path[-1]
        if op == "replace":
            parent[last] = draw(VALUES)
        elif op == "delete":
            del parent[last]
        elif op == "wrap":
            parent[last] = draw(
                st.sampled_from([[parent[last]], {"secure": parent[last]}, {"x": parent[last]}])
            )
        elif op == "add":
            target = parent[last]
            if isinstance(target, dict):
                target[draw(st.text(max_size=12))] = draw(VALUES)
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), draw(VALUES))
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return doc


YAML_NOISE = st.sampled_from(
    [
        "[k]: ",
        "{k: 1}: ",
        "? [k]\n: ",
        ":",
        "- ",
        "[",
        "]",
        "{",
        "}",
        "&a ",
        "*a",
        "!!set ",
        "!!binary ",
        "? ",
        "|",
        ">",
        "#",
        "\t",
        "'",
        '"',
        "%",
        "@",
        "`",
        "\\",
        "\x00",
        "\ufeff",
        "<<: *a",
        "---\n",
        "...\n",
        "  ",
        "\n",
    ]
)


@st.composite
def mutated_text(draw: st.DrawFn, base: str, *, edits: int = 3) -> str:
    """``base`` with 1..``edits`` edits: a line cut, repeated or re-indented, YAML syntax inserted."""
    lines = base.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, edits))):
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        op = draw(st.sampled_from(["cut", "repeat", "indent", "insert", "insert", "truncate"]))
        if not lines:
            lines = [draw(YAML_NOISE)]
        elif op == "cut":
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "    ", "\t"])) + lines[i].lstrip(" ")
        elif op == "insert":
            col = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:col] + draw(YAML_NOISE) + lines[i][col:]
        else:
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
    return "".join(lines)


# ---- drctl as a subprocess --------------------------------------------------------------------


def drctl(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 20
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``drctl ARGS``; returns the result and its duration (a hang fails via ``timeout``)."""
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "drctl.cli", *args],
        capture_output=True,
        text=True,
        errors="replace",
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return r, time.monotonic() - t0


def drctl_many(
    argvs: list[tuple[str, ...]], *, env: dict[str, str] | None = None, workers: int = 2
) -> list[tuple[subprocess.CompletedProcess[str], float]]:
    """:func:`drctl` for each argv, two at a time (the corpus must stay under a minute)."""
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda argv: drctl(*argv, env=env), argvs))


def assert_clean_failure(
    r: subprocess.CompletedProcess[str], *, files: tuple[str, ...] = (), allowed: set[int] | None = None
) -> None:
    """What a user must see for any bad input: a documented exit code, stderr starting with
    ``drctl:`` or ``FILE:`` (a problem of one of ``files``), no traceback."""
    where = f"drctl {' '.join(r.args[3:])[:200]!r} -> {r.returncode}\n{r.stderr[-2000:]}"
    assert r.returncode in (allowed or DOCUMENTED_EXITS), where
    assert "Traceback" not in r.stderr, where
    if r.returncode != 0 and "--json" in r.args and not r.stderr:
        json.loads(r.stdout)  # validate --json: the problems are the JSON document on stdout
    elif r.returncode != 0:
        assert r.stderr.startswith(("drctl: ", *(f"{f}: " for f in files))), where
