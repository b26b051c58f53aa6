"""The backup agent's commands: agent config, units, run, status (README "Agent")."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from drctl.commands.arg_types import positive_int
from drctl.errors import EXIT_OK

_JSON_HELP = "JSON lines on stdout: events (progress), the last one the result"


def cmd_config(args: argparse.Namespace) -> int:
    from drctl.agent.render import QemuSockets, map_disks, render
    from drctl.stack.config import load_stack

    stack = load_stack(args.stack)
    disks = map_disks(
        stack,
        args.server,
        args.disk or [],
        snapshot_size=args.snapshot_size,
        qemu=QemuSockets(args.qmp_socket, args.guest_agent_socket),
    )
    done = render(
        stack,
        args.server,
        disks,
        Path(args.out),
        pre_hook=args.pre_hook,
        post_hook=args.post_hook,
        hook_timeout_s=args.hook_timeout,
        state_dir=Path(args.state_dir) if args.state_dir else None,
    )
    print(f"wrote {done.config_path}")
    print(f"{'created' if done.key_created else 'kept'} the agent key {done.key_path} (0600)")
    print(f"recorded its public key in {done.stack_file} under agent_keys.{args.server}")
    print(f"next: drctl agent units --config {done.config_path} --out /etc/systemd/system")
    return EXIT_OK


def cmd_units(args: argparse.Namespace) -> int:
    from drctl.agent.config import load_config
    from drctl.agent.units import render_units

    cfg = load_config(args.config)
    drctl = args.drctl or shutil.which("drctl") or str(Path(sys.argv[0]).resolve())
    units = render_units(
        cfg,
        Path(args.config).resolve(),
        drctl,
        password_file=args.password_file,
        password_command=args.password_command,
    )
    if args.out:
        from drctl.private_files import write_private_file

        out = Path(args.out)
        for name, text in units.files.items():
            write_private_file(out / name, text).chmod(0o644)  # systemd reads them; no secret inside
            print(f"wrote {out / name}")
        timers = " ".join(n for n in units.files if n.endswith(".timer"))
        print(f"next: systemctl daemon-reload && systemctl enable --now {timers}")
    else:
        for name, text in units.files.items():
            print(f"### {name}\n{text}")
    for note in units.skipped:
        print(f"drctl: note: {note}", file=sys.stderr)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from drctl.agent.config import load_config
    from drctl.agent.job import run_job
    from drctl.repo.password import read_password
    from drctl.repo.progress import progress_for
    from drctl.repo.repository import open_repository, read_config
    from drctl.storage import open_storage

    cfg = load_config(args.config)

    def open_repo(storage):
        read_config(storage)  # "no repository" (10) before asking for a password
        return open_repository(storage, read_password(args.password_file, args.password_command))

    outcome = run_job(
        cfg,
        args.type,
        open_repo,
        storage=open_storage(cfg.repository),
        events=args.events,
        progress=progress_for(args.events),
    )
    if args.json:
        args.events.result(outcome.summary())
    else:
        r = outcome.record
        for disk, point in r.points.items():
            print(f"{disk} {point}")
        print(
            f"drctl: job {r.job_id} of {r.server}: {r.type} {r.result}, {r.bytes_read} bytes read, "
            f"{r.bytes_uploaded} uploaded"
            + (f"; retention: {outcome.retention}" if outcome.retention else "")
            + ("" if outcome.published else f"; status record kept in {cfg.spool_dir}"),
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from drctl.agent.config import load_config
    from drctl.agent.history import job_history
    from drctl.storage import open_storage

    cfg = load_config(args.config)
    history = job_history(cfg, open_storage(cfg.repository), last=args.last)
    if history.store_error:
        print(
            f"drctl: warning: the store cannot be listed ({history.store_error}); spooled jobs only",
            file=sys.stderr,
        )
    if args.json:
        args.events.result(
            {
                "server": cfg.server,
                "jobs": [j.as_dict() for j in history.jobs],
                "store_error": history.store_error,
            }
        )
        return EXIT_OK
    print(f"{'ENDED (UTC)':<20} {'TYPE':<13} {'RESULT':<8} {'TRUST':<9} {'WHERE':<6} DETAIL")
    for job in history.jobs:
        r = job.stored.record
        if r is None:
            print(
                f"{'?':<20} {'?':<13} {'?':<8} {job.stored.trust.value:<9} {job.where:<6} {job.stored.problem}"
            )
            continue
        detail = r.error or ", ".join(f"{d}={p[:8]}" for d, p in r.points.items())
        print(
            f"{r.ended:%Y-%m-%d %H:%M:%S}  {r.type:<13} {r.result:<8} {job.stored.trust.value:<9} "
            f"{job.where:<6} {detail}"
        )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``agent config|units|run|status``."""
    agent = sub.add_parser("agent", help="the backup agent: config, systemd units, jobs, their status")
    asub = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")

    p = asub.add_parser(
        "config",
        help="render one server's agent config (and its signing key) from the plan and stack",
        description="Render one server's agent config (YAML, 0600, no secret) and create the agent's "
        "Ed25519 key beside it; its public key is recorded in the stack file under agent_keys.<server>.",
    )
    p.add_argument("stack", metavar="STACK")
    p.add_argument("--server", required=True, help="the plan's server name")
    p.add_argument(
        "--disk",
        action="append",
        metavar="DISK=PATH[:METHOD]",
        help="map a plan disk to a block device or image; METHOD none (default), lvm-snapshot or qemu",
    )
    p.add_argument("--pre-hook", metavar="CMD", help="command run before each backup job (no shell)")
    p.add_argument("--post-hook", metavar="CMD", help="command run after each backup job, always (no shell)")
    p.add_argument(
        "--hook-timeout", type=positive_int, default=300, metavar="S", help="per hook (default 300)"
    )
    p.add_argument("--snapshot-size", default="1G", help="lvm-snapshot: lvcreate -L SIZE (default 1G)")
    p.add_argument("--qmp-socket", metavar="PATH", help="qemu: the VM's QMP socket")
    p.add_argument("--guest-agent-socket", metavar="PATH", help="qemu: the VM's guest agent socket")
    p.add_argument(
        "--state-dir", metavar="DIR", help="job lock and spool (default /var/lib/drctl-agent/SERVER)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where the config and the key are written")
    p.set_defaults(func=cmd_config)

    pw = argparse.ArgumentParser(add_help=False)
    pw.add_argument("--password-file", metavar="FILE", help="read the password from the first line of FILE")
    pw.add_argument(
        "--password-command",
        metavar="CMD",
        help="run CMD (no shell) and read the password from its first line",
    )

    p = asub.add_parser("units", parents=[pw], help="render systemd service and timer units for the schedule")
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="write the unit files there (default: print them)")
    p.add_argument("--drctl", metavar="PATH", help="the drctl executable the units run (default: this one)")
    p.set_defaults(func=cmd_units)

    p = asub.add_parser(
        "run",
        parents=[pw],
        help="run one job now: backup of every disk (or prune), one signed status record",
        description="Run one agent job. The repository password comes from --password-file, "
        "--password-command or DRCTL_PASSWORD. A job that finds another still running is recorded "
        "as skipped and exits 11.",
    )
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--type", required=True, choices=("full", "incremental", "differential", "prune"))
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_run)

    p = asub.add_parser("status", help="the last jobs of this server, newest first")
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--last", type=positive_int, default=10, metavar="N", help="how many jobs (default 10)")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_status)
