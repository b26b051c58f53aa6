"""``drctl validate PLAN...`` (the schema and the semantic rules), ``drctl plan import`` (a draft
from an OpenStack cloud) and ``drctl plan rto`` (the predicted recovery times)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
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
    register_plan(sub)


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


def register_plan(sub: argparse._SubParsersAction) -> None:
    """``plan import`` and ``plan rto``."""
    from drctl.commands.arg_types import stack_name

    p = sub.add_parser("plan", help="draft a plan from a cloud; predict its recovery times")
    p_sub = p.add_subparsers(dest="plan_command", required=True, metavar="SUBCOMMAND")
    i = p_sub.add_parser(
        "import",
        help="draft a plan from what an OpenStack cloud shows (servers, flavors, volumes, ports)",
        description="Reads the servers of a protected site that is itself an OpenStack cloud "
        "(clouds.yaml entry NAME) and writes a plan whose class, RPO/RTO, dependencies and checks "
        "are TODOs that `drctl validate` refuses until filled.",
    )
    i.add_argument("--cloud", required=True, metavar="NAME", help="the cloud's entry in clouds.yaml")
    i.add_argument("--project", metavar="P", help="the project to read (default: the cloud entry's)")
    i.add_argument("--site", metavar="NAME", help="the site's name in the plan (default: the cloud's name)")
    i.add_argument(
        "--out", type=Path, metavar="FILE", help="write the draft here (new file) instead of stdout"
    )
    i.set_defaults(func=run_plan_import)

    r = p_sub.add_parser(
        "rto",
        help="predicted time to recover each server, against its RTO",
        description="The critical path through the boot dependencies of restore time (disk sizes / "
        "the restore throughput the last drill measured on this client's repository) plus boot and "
        "check times (the last drill's, or stated defaults), for every server in scope.",
    )
    r.add_argument("stack", type=stack_name, help="stack name: stacks/Pulumi.<stack>.yaml")
    r.add_argument("--state-dir", type=Path, default=None, help="where runs are stored (default: .state)")
    r.add_argument("--json", action="store_true", help="JSON lines on stdout: a result event (README)")
    r.add_argument(
        "--project-dir", type=Path, default=None, help="directory of Pulumi.yaml (default: this checkout)"
    )
    r.set_defaults(func=run_plan_rto)


def run_plan_import(args: argparse.Namespace) -> int:
    from drctl.plan.importer import connect, draft_plan, render

    doc = draft_plan(connect(args.cloud, args.project), cloud=args.cloud, site=args.site)
    text = render(doc, cloud=args.cloud)
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    from drctl.errors import InvalidInput, LocalIOError

    # Written whole under a temporary name, then linked to its name only if that is still free.
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.link(tmp, args.out)
    except FileExistsError:
        raise InvalidInput(
            f"--out {args.out}: already exists; choose a new file (nothing was written)"
        ) from None
    except OSError as e:
        raise LocalIOError(f"--out {args.out}: cannot write it: {e.strerror}; nothing was written") from e
    finally:
        tmp.unlink(missing_ok=True)
    print(f"drafted {len(doc['servers'])} servers into {args.out}; fill in its TODOs", file=sys.stderr)
    return EXIT_OK


def predict_stack(stack: str, project_dir: Path | None, state_dir: Path | None) -> Any:
    """The RtoPrediction of a stack from its last drill (``drctl plan rto``, the drill report)."""
    from drctl.plan.rto import last_measurement, predict
    from drctl.runs.store import RunStore
    from drctl.stack.config import load_stack

    cfg = load_stack(stack, project_dir)
    runs = [r.summary for r in RunStore(state_dir).list_runs(stack)]
    return cfg, predict(cfg.plan, cfg.scope(), last_measurement(runs, cfg.plan))


def run_plan_rto(args: argparse.Namespace) -> int:
    from drctl.plan.rto import format_prediction

    _, prediction = predict_stack(args.stack, args.project_dir, args.state_dir)
    if args.json:
        args.events.result({"stack": args.stack, **prediction.as_dict()})
    else:
        print(format_prediction(prediction))
    over = [s.name for s in prediction.servers if not s.within_target]
    if over:
        print(f"drctl: predicted over RTO: {', '.join(over)}", file=sys.stderr)
    return EXIT_OK
