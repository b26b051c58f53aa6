"""``drctl agent units``: systemd service and timer units running the plan's schedule.

One ``oneshot`` service and one timer per schedule entry of the server, named
``drctl-agent-<server>-<type>.{service,timer}``, plus ``drctl-agent-<server>-prune`` (weekly). Each
service runs ``drctl agent run --config CFG --type TYPE`` (or ``--type prune``).

Schedule -> timer (``every`` of the plan, in seconds):

- an interval that divides a day evenly, in whole minutes up to an hour or whole hours
  (15m, 1h, 6h...): ``OnCalendar`` at those wall-clock times from midnight (``*:00/15``, ``00/6:00``);
- ``1d``: ``OnCalendar=*-*-* 00:00:00``; ``7d``: ``OnCalendar=Sun *-*-* 00:00:00``;
- anything else (``3d``, ``90m``): ``OnBootSec`` + ``OnUnitActiveSec`` (monotonic; ``Persistent``
  then has no effect).

Every timer has ``Persistent=true`` (a run missed while the machine was off happens at boot) and a
``RandomizedDelaySec`` of a tenth of the interval (30 s to 1 h) so that many agents do not hit the
store at once. Two timers firing together (a weekly full and a daily incremental on Sunday) are
serialised by the job lock: the second records "skipped", the next one catches up.

The password never appears in a unit: ``--password-file``/``--password-command`` are passed as
given, otherwise ``DRCTL_PASSWORD`` must come from the environment file. The object store's
credentials (``AWS_*``) come from ``EnvironmentFile=-/etc/drctl/agent-<server>.env`` (0600, root).
A ``log`` entry is rendered as ``drctl agent run --type log`` when the config has a ``database``
section (PostgreSQL: the server ships its WAL itself with ``drctl wal push`` as archive_command;
the job reports how that went, see :mod:`drctl.agent.log_job`); without one it is not rendered
(drctl produces log backups for PostgreSQL only), which the units' header and the command's output
say.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drctl.agent.config import AgentConfig

DAY = 86400
PRUNE_CALENDAR = "Sun *-*-* 04:00:00"


@dataclass(frozen=True)
class UnitSet:
    files: dict[str, str]  # file name -> content
    skipped: tuple[str, ...]  # what was not rendered, and why


def _quote(arg: str) -> str:
    """One ExecStart argument: systemd's specifiers (%) and variables ($) escaped, quoted when needed."""
    text = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{text}"' if re.search(r"[\s\"'\\;]", arg) or not arg else text


def timer_schedule(every_s: int) -> list[str]:
    """The ``[Timer]`` lines that fire every ``every_s`` seconds (see the module docstring)."""
    if every_s == DAY:
        return ["OnCalendar=*-*-* 00:00:00"]
    if every_s == 7 * DAY:
        return ["OnCalendar=Sun *-*-* 00:00:00"]
    if DAY % every_s == 0 and every_s % 60 == 0:
        minutes = every_s // 60
        if minutes < 60 and 60 % minutes == 0:
            return [f"OnCalendar=*-*-* *:00/{minutes}:00"]
        if minutes % 60 == 0:
            return [f"OnCalendar=*-*-* 00/{minutes // 60}:00:00"]
    return [f"OnBootSec={min(every_s, 900)}s", f"OnUnitActiveSec={every_s}s"]


def _delay(every_s: int) -> int:
    return max(30, min(every_s // 10, 3600))


def _describe(every_s: int) -> str:
    for unit, n in (("d", DAY), ("h", 3600), ("m", 60)):
        if every_s % n == 0:
            return f"{every_s // n}{unit}"
    return f"{every_s}s"


def render_units(
    cfg: AgentConfig,
    config_path: Path,
    drctl: str,
    *,
    password_file: str | None = None,
    password_command: str | None = None,
    base: str | None = None,
    command: Callable[[str], list[str]] | None = None,
    prune: bool = True,
    rendered_by: str = "drctl agent units",
) -> UnitSet:
    """The unit files of one server's agent. ``base`` (default ``drctl-agent-<server>``) names the
    units, ``command`` gives a job type's command line (default ``drctl agent run --config ...``),
    ``prune`` adds the weekly prune."""
    base = base or f"drctl-agent-{cfg.server}"
    entries: list[tuple[str, list[str], int]] = []  # (type, timer lines, randomized delay)
    skipped: list[str] = []
    for e in cfg.schedule:
        if e.type == "log" and cfg.database is None:
            skipped.append(
                f"log every {_describe(e.every_s)}: not rendered, the agent config has no database section "
                "(drctl produces log backups for PostgreSQL only: WAL archiving with `drctl wal push`)"
            )
            continue
        if any(t == e.type for t, _, _ in entries):
            skipped.append(f"{e.type} every {_describe(e.every_s)}: a second {e.type} entry, not rendered")
            continue
        entries.append((e.type, timer_schedule(e.every_s), _delay(e.every_s)))
    if prune:
        entries.append(("prune", [f"OnCalendar={PRUNE_CALENDAR}"], 3600))
    plan_lines = [f"#   {e.type} every {_describe(e.every_s)}" for e in cfg.schedule] or ["#   (none)"]
    header = "\n".join(
        [
            f"# drctl agent of server {cfg.server} (client {cfg.client}), rendered by `{rendered_by}`.",
            "# The plan's schedule:",
            *plan_lines,
            *(f"# Not rendered: {s}" for s in skipped),
            "",
        ]
    )
    auth: list[str] = []
    if password_file:
        auth = ["--password-file", password_file]
    elif password_command:
        auth = ["--password-command", password_command]
    files: dict[str, str] = {}
    for job_type, schedule, delay in entries:
        name = f"{base}-{job_type}"
        argv = (
            [*command(job_type), *auth]
            if command
            else [drctl, "agent", "run", "--config", str(config_path), "--type", job_type, *auth]
        )
        what = {
            "prune": "prune of the repository",
            "log": f"WAL archiving report of server {cfg.server}",
        }.get(job_type, f"{job_type} backup of server {cfg.server}")
        files[f"{name}.service"] = "\n".join(
            [
                header,
                "[Unit]",
                f"Description=drctl agent: {what}",
                "Wants=network-online.target",
                "After=network-online.target",
                "",
                "[Service]",
                "Type=oneshot",
                f"EnvironmentFile=-/etc/drctl/agent-{cfg.server}.env",
                "ExecStart=" + " ".join(_quote(a) for a in argv),
                "UMask=0077",
                "Nice=10",
                "IOSchedulingClass=idle",
                "",
            ]
        )
        files[f"{name}.timer"] = "\n".join(
            [
                header,
                "[Unit]",
                f"Description=drctl agent: {what}, on the plan's schedule",
                "",
                "[Timer]",
                *schedule,
                "Persistent=true",
                f"RandomizedDelaySec={delay}",
                "AccuracySec=1min",
                f"Unit={name}.service",
                "",
                "[Install]",
                "WantedBy=timers.target",
                "",
            ]
        )
    return UnitSet(files, tuple(skipped))
