"""``drctl validate PLAN...``: check recovery plans against the schema and the semantic rules."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from drctl.errors import EXIT_INVALID, EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the parser."""
    p = sub.add_parser(
        "validate",
        help="check recovery plans (schema and semantic rules), reporting every problem",
        description="Check each recovery plan against scripts/plan/schema.json and the semantic "
        "rules (names, dependencies, addressing, RPO, contacts). Every problem is printed "
        "on stderr as FILE: path.to.field: message. Exit 0 only if every plan is valid. A valid plan "
        "may still get notes (FILE: path: note: message): what it promises that drctl does not deliver, "
        "such as log backups of a database other than PostgreSQL.",
    )
    p.add_argument("plans", nargs="+", metavar="PLAN", help="recovery plan file (YAML)")
    p.add_argument(
        "--json",
        action="store_true",
        help='JSON lines on stdout: a result event {"ok", "plans": [{"file", "ok", "servers", '
        '"sites", "problems", "notes"}]}',
    )
    p.set_defaults(func=run_validate)


def validate_files(paths: list[str]) -> list[dict[str, Any]]:
    """One result per file: ``{"file", "ok", "servers", "sites", "problems": [{file, path, message}],
    "notes": [...]}`` (notes: like problems, for what a valid plan promises that drctl does not deliver)."""
    from drctl.plan.load import PlanInvalid, load_plan_with_notes  # jsonschema: only when validating

    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            plan, notes = load_plan_with_notes(path)
        except PlanInvalid as e:
            results.append(
                {
                    "file": path,
                    "ok": False,
                    "servers": None,
                    "sites": None,
                    "problems": [p.as_dict() for p in e.problems],
                    "notes": [],
                }
            )
        else:
            results.append(
                {
                    "file": path,
                    "ok": True,
                    "servers": len(plan.servers),
                    "sites": len(plan.sites),
                    "problems": [],
                    "notes": [n.as_dict() for n in notes],
                }
            )
    return results


def run_validate(args: argparse.Namespace) -> int:
    results = validate_files(args.plans)
    ok = all(r["ok"] for r in results)
    if args.json:
        args.events.result({"ok": ok, "plans": results})
    else:
        for r in results:
            if r["ok"]:
                print(f"{r['file']}: ok ({r['servers']} servers, {r['sites']} sites)")
        for r in results:
            for n in r["notes"]:
                print(f"{n['file']}: {n['path']}: note: {n['message']}", file=sys.stderr)
            for p in r["problems"]:
                print(f"{p['file']}: {p['path']}: {p['message']}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_INVALID
