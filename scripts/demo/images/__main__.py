"""``python -m drctl.demo.images build``: build (or reuse) the demo servers' disk images."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drctl import paths
from drctl.cli import run_reporting_errors
from drctl.demo.images.builder import build_demo_images, default_images_dir
from drctl.events import EventStream

DEFAULT_PLAN = paths.project_dir() / "recovery_plans" / "demo.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drctl.demo.images", description="Build the demo servers' disk images (cached)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build what is missing from the cache and print the image paths")
    b.add_argument("--plan", type=Path, default=DEFAULT_PLAN, help="recovery plan (default: the demo plan)")
    b.add_argument("--server", action="append", dest="servers", help="only this server (repeatable)")
    b.add_argument(
        "--break",
        action="append",
        dest="broken",
        default=[],
        metavar="SERVER",
        help="build SERVER with its main service masked (repeatable)",
    )
    b.add_argument("--images-dir", type=Path, default=None, help=f"cache (default: {default_images_dir()})")
    b.add_argument(
        "--json", action="store_true", help="JSON lines on stdout: prepare-step events, then the result"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")

    events = EventStream() if args.json else None

    def progress(who: str, msg: str) -> None:
        if events is not None:
            events.emit("prepare-step", {"subject": who, "message": msg})
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {who}: {msg}", file=sys.stderr, flush=True)

    def build() -> int:
        from drctl.plan.load import load_plan

        t0 = time.monotonic()
        result = build_demo_images(
            load_plan(args.plan),
            images_dir=args.images_dir,
            servers=args.servers,
            broken=args.broken,
            progress=progress,
        )
        summary: dict[str, Any] = {
            "images": {k: str(v) for k, v in result.images.items()},
            "ssh_identity_file": str(result.ssh_identity_file),
            "built": list(result.built),
            "cached": list(result.cached),
            "seconds": result.seconds,
            "total_s": round(time.monotonic() - t0, 1),
        }
        if events is not None:
            events.result(summary)
        else:
            for name, path in summary["images"].items():
                print(f"{name}\t{path}")
            print(f"ssh key\t{summary['ssh_identity_file']}")
        return 0

    return run_reporting_errors(build, events, interrupted="interrupted; partial images were removed")


if __name__ == "__main__":
    sys.exit(main())
