"""Notes on a valid plan: what it promises that drctl does not deliver.

A ``log`` entry of a server's backup schedule means what its ``backup.database`` says: WAL
archiving for PostgreSQL (produced by ``drctl wal push``), transaction log backups for SQL Server,
archived redo logs for Oracle. drctl produces PostgreSQL's only, so a log schedule of any other
(or an undeclared) database promises an RPO that nothing backs: ``drctl validate`` prints a note
for it (the plan stays valid: a client may run its own log backups).
"""

from __future__ import annotations

from typing import Any

from drctl.plan.document import duration, format_duration, items, restore_point_gap, sub

# What a ``log`` schedule entry means per ``backup.database``, and whether drctl produces it.
LOG_BACKUPS = {
    "postgresql": "WAL archiving (drctl wal push as archive_command)",
    "sqlserver": "SQL Server transaction log backups",
    "oracle": "Oracle archived redo log backups",
    "other": "log backups",
}
LOG_PRODUCED = ("postgresql",)


def plan_notes(doc: Any) -> list[tuple[str, str]]:
    """What a valid plan promises that drctl does not deliver, as ``(field path, message)``: log
    schedules of a database drctl produces no log backups for (only PostgreSQL's WAL is), so the
    RPO they promise rests on the disk-level restore points alone."""
    out: list[tuple[str, str]] = []
    for i, s in items(doc, "servers"):
        backup = sub(s, "backup")
        db = backup.get("database")
        steps = [(j, st.get("type"), duration(st.get("every"))) for j, st in items(backup, "schedule")]
        logs = [(j, e) for j, t, e in steps if t == "log" and e is not None]
        if not logs or db in LOG_PRODUCED:
            continue
        disk_gap = restore_point_gap(
            [(t, e) for _, t, e in steps if isinstance(t, str) and t != "log" and e is not None]
        )
        j, every = logs[0]
        what = LOG_BACKUPS.get(str(db), "log backups")
        why = (
            f"drctl does not produce {what} (only PostgreSQL's WAL: backup.database: postgresql)"
            if db
            else "drctl produces log backups only for PostgreSQL (WAL archiving) and backup.database "
            "does not say which database this server runs"
        )
        backed = (
            f"restore points come from the disk backups alone, up to {format_duration(disk_gap)} apart"
            if disk_gap
            else "no disk backup makes restore points either"
        )
        out.append(
            (
                f"servers[{i}].backup.schedule[{j}]",
                f"log every {format_duration(every)}: {why}, so the RPO {s.get('rpo')} of {s.get('name')} "
                f"is not backed: {backed}",
            )
        )
    return out
