"""Loading and validating recovery plans: YAML, then the JSON Schema, then the semantic rules.

Values left as ``TODO`` by ``drctl client new`` or ``drctl plan import`` are reported as such
(:mod:`drctl.plan.todos`). Every problem of a plan is collected and reported at once, each as ``FILE: path.to.field: message``
(``recovery_plans/x.yaml: servers[2].nics[0].ip: 10.0.0.5 is outside subnet paris/lan (...)``).
The semantic rules read the raw document, tolerating the shapes the schema already rejected, so a
file with a schema error still gets its semantic problems reported in the same run.

Public interface: :func:`load_plan` (path -> :class:`~drctl.plan.model.Plan` or :class:`PlanInvalid`),
:func:`check_document` (already-parsed document -> problems) and :func:`restore_point_gap`.
"""

from __future__ import annotations

import datetime
import difflib
import importlib.resources
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from drctl.errors import DrctlError, InvalidInput
from drctl.input_files import InputFileError, read_input_text
from drctl.input_files import parse_yaml as parse_document
from drctl.plan.document import restore_point_gap  # noqa: F401 (public: callers import it from here)
from drctl.plan.model import Plan, plan_from_dict
from drctl.plan.notes import plan_notes
from drctl.plan.rules import semantic_problems
from drctl.plan.todos import find_todos, todo_message, under

log = logging.getLogger(__name__)

# Package data of drctl.plan (pyproject.toml); recovery_plans/schema.json links to it in the checkout.
SCHEMA_PATH = importlib.resources.files("drctl.plan") / "schema.json"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a plan file; ``where`` is a field path (``servers[2].rpo``) or a line."""

    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "path": self.where, "message": self.message}


class PlanInvalid(InvalidInput):
    """A recovery plan is invalid; ``problems`` lists every problem found, each naming its field."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = tuple(problems)
        n = len(problems)
        lines = "\n".join(str(p) for p in problems)
        super().__init__(
            f"{file} is not a valid recovery plan ({n} problem{'s' if n != 1 else ''}); "
            f"fix the fields below and run `drctl validate {file}` again:\n{lines}"
        )


class SchemaMissing(DrctlError):
    """The plan schema (package data ``drctl/plan/schema.json``) is missing from the installation."""


# --------------------------------------------------------------------------------------------
# Parsing


def parse_yaml(text: str, file: str) -> tuple[Any, list[Problem]]:
    """Parse a plan's text (bounded YAML, see :mod:`drctl.input_files`: duplicate keys, non-text
    keys, alias bombs and runaway nesting refused); a problem is located by line and column."""
    try:
        return parse_document(text, file), []
    except InputFileError as e:
        return None, [Problem(file, e.where, e.reason)]


# --------------------------------------------------------------------------------------------
# Schema


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    try:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError as e:
        raise SchemaMissing(
            f"cannot read the plan schema {SCHEMA_PATH}: {e.strerror}; the drctl installation is "
            "incomplete: reinstall it from the repository (`pip install .`)"
        ) from e
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def field_path(parts: Any) -> str:
    """``("servers", 2, "nics", 0, "ip")`` -> ``servers[2].nics[0].ip``; empty -> ``(plan)``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(plan)"


def _schema_problems_of(e: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """One schema error as ``(field path, message)`` pairs, worded for a person editing YAML."""
    path = list(e.absolute_path)
    schema = e.schema if isinstance(e.schema, dict) else {}
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        # One line per unknown key, at its own path, with the likely intended name (typos).
        allowed = list(schema.get("properties", {}))
        out = []
        for key in e.instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(allowed)}"
            out.append((field_path([*path, key]), f"unknown field ({hint})"))
        return out
    if e.validator == "required" and isinstance(e.instance, dict):
        # jsonschema reports each missing field as its own error, all alike but for the message:
        # name every missing field here, duplicates are dropped in schema_problems.
        required = e.validator_value if isinstance(e.validator_value, list) else []
        missing = [k for k in required if k not in e.instance]
        if missing:
            return [(field_path([*path, k]), "required field is missing") for k in missing]
    if e.validator in ("pattern", "format") and "description" in schema:
        # Patterns read badly as regexes: say what was expected instead.
        return [(field_path(path), f"{e.instance!r} is not {schema['description']}")]
    if e.validator == "minItems" and e.validator_value == 1:
        return [(field_path(path), "must not be empty")]
    return [(field_path(path), e.message)]


def schema_problems(doc: Any) -> list[tuple[str, str]]:
    """Every schema violation as ``(field path, message)``, in document-path order."""
    errors = sorted(
        _validator().iter_errors(doc),
        key=lambda e: tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.absolute_path),
    )
    return list(dict.fromkeys(pm for e in errors for pm in _schema_problems_of(e)))


# --------------------------------------------------------------------------------------------
# Semantic rules (over the raw document; anything of the wrong shape is skipped: the schema
# reports it)


def _dates_as_text(doc: dict) -> None:
    """YAML reads an unquoted ``2027-03-15`` as a date: the agreed test dates are checked (and
    modelled) from their text, whichever way the plan wrote them."""
    tests = doc.get("tests")
    for item in tests if isinstance(tests, list) else ():
        if isinstance(item, dict) and isinstance(item.get("date"), datetime.date):
            if isinstance(item["date"], datetime.datetime):
                continue  # a time of day is not a date: the schema says so
            item["date"] = item["date"].isoformat()


def check_document(doc: Any, file: str) -> list[Problem]:
    """All problems of an already-parsed plan document (schema first, then semantics)."""
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else type(doc).__name__
        return [
            Problem(
                file, "(plan)", f"a plan is a YAML mapping (client, contacts, sites, servers), not {kind}"
            )
        ]
    _dates_as_text(doc)
    todos = [(field_path(parts), todo_message(text)) for parts, text in find_todos(doc)]
    todo_paths = [where for where, _ in todos]
    # The semantic rules read filled values (subnets, addresses, dependencies): they run once no
    # TODO is left, so a half-drafted plan gets its TODOs and its shape errors, not their echoes.
    found = schema_problems(doc) + (semantic_problems(doc) if not todos else [])
    found = [(w, m) for w, m in found if not under(w, todo_paths)]
    return [Problem(file, where, msg) for where, msg in todos + found]


def load_plan(path: str | Path) -> Plan:
    """Read, validate and build a plan; raise :class:`PlanInvalid` listing every problem."""
    file = str(path) or "''"  # an empty argument still names the file it is
    try:
        text = read_input_text(path, what="plan")
    except InputFileError as e:
        raise PlanInvalid(file, [Problem(file, e.where, e.reason)]) from e
    return plan_from_text(text, file)


def plan_from_text(text: str, file: str) -> Plan:
    """Parse, validate and build a plan from its text; ``file`` names it in every problem."""
    return _plan_and_notes(text, file)[0]


def load_plan_with_notes(path: str | Path) -> tuple[Plan, list[Problem]]:
    """:func:`load_plan`, and the notes of the valid plan: what it promises that drctl does not
    deliver (log schedules of databases drctl produces no log backups for)."""
    file = str(path) or "''"
    try:
        text = read_input_text(path, what="plan")
    except InputFileError as e:
        raise PlanInvalid(file, [Problem(file, e.where, e.reason)]) from e
    return _plan_and_notes(text, file)


def _plan_and_notes(text: str, file: str) -> tuple[Plan, list[Problem]]:
    doc, problems = parse_yaml(text, file)
    if not problems:
        problems = check_document(doc, file)
    if problems:
        log.debug("%s: %d problem(s)", file, len(problems))
        raise PlanInvalid(file, problems)
    return plan_from_dict(doc), [Problem(file, where, msg) for where, msg in plan_notes(doc)]
