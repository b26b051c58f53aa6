"""The speed targets of the restore benchmark (docs/benchmarks.md) as a pure function: measurements
in, table rows with PASS / MISS out. ``restore_benchmark.py`` measures; this decides.

Every ratio compares medians of at least ``MIN_ROUNDS`` rounds measured side by side in one run. A
target that could not be measured (restic missing, too few rounds) is a MISS, never a pass."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

MiB = 1024 * 1024
MIN_ROUNDS = 3

RESTORE_VS_RESTIC = 1.5  # whole CLI, same image, same connection count
DATA_VS_RAW_GET = 0.6  # restore data phase throughput / raw parallel GET of the same objects
CPU_VS_RAW_GET = 2.0  # restore CPU-seconds / raw GET client CPU-seconds, at most
BACKUP_VS_RESTIC = 2.0  # first backup, same image
SECOND_BACKUP_UPLOAD = 0.02  # of the image, after 1 % of its blocks changed
PEAK_RSS_MIB = 256


@dataclass(frozen=True)
class Row:
    measure: str
    result: str
    target: str = "-"
    ok: bool | None = None  # None: information, not a target

    def cells(self) -> str:
        verdict = "-" if self.ok is None else ("PASS" if self.ok else "**MISS**")
        return f"| {self.measure} | {self.result} | {self.target} | {verdict} |"


@dataclass(frozen=True)
class Measured:
    """What one benchmark run measured (seconds, bytes, KiB of peak RSS), one entry per round."""

    size: int
    raw_get_s: list[float]
    raw_get_cpu_s: list[float]
    restore_cli_s: list[float]
    restore_data_s: list[float]
    restore_cpu_s: list[float]
    restore_rss_kib: list[int]
    backup_s: list[float]
    backup_rss_kib: list[int]
    second_backup_uploaded: int
    restic_restore_s: list[float] = field(default_factory=list)
    restic_backup_s: list[float] = field(default_factory=list)
    restic_note: str = ""  # why restic did not take part
    concurrent: tuple[int, float, bool] | None = None  # restores at once, wall seconds, all verified
    pinned_cpus: dict[int, list[float]] = field(default_factory=dict)  # CPUs -> restore CLI seconds


def median(xs: list[float] | list[int]) -> float:
    return float(statistics.median(xs))


def runs(xs: list[float]) -> str:
    return f"{median(xs):.2f} s (runs {', '.join(f'{x:.2f}' for x in xs)})"


def _enough(*series: list[float]) -> bool:
    return all(len(s) >= MIN_ROUNDS for s in series)


def _ratio_row(measure: str, target: float, faster: list[float], slower: list[float], note: str) -> Row:
    """``slower``/``faster`` median time ratio against ``>= target``; MISS when not measured."""
    want = f">= {target}x"
    if not _enough(faster, slower):
        why = note or f"fewer than {MIN_ROUNDS} rounds"
        return Row(measure, f"not measured: {why}", want, False)
    ratio = median(slower) / median(faster)
    return Row(measure, f"{ratio:.2f}x ({runs(faster)} vs {runs(slower)})", want, ratio >= target)


def target_rows(m: Measured) -> list[Row]:
    """One row per target of the issue, in its order, then the information rows."""
    mib = m.size / MiB
    rows = [
        _ratio_row(
            "restore, whole CLI: speed-up vs restic 0.14 restore (same image, same connections)",
            RESTORE_VS_RESTIC,
            m.restore_cli_s,
            m.restic_restore_s,
            m.restic_note,
        )
    ]
    if _enough(m.raw_get_s, m.restore_data_s):
        data = median(m.raw_get_s) / median(m.restore_data_s)
        rows.append(
            Row(
                "restore data phase throughput / raw parallel GET of the same objects",
                f"{data:.2f} (restore {runs(m.restore_data_s)}, GET {runs(m.raw_get_s)})",
                f">= {DATA_VS_RAW_GET}",
                data >= DATA_VS_RAW_GET,
            )
        )
    else:
        rows.append(Row("restore data phase / raw GET", "not measured", f">= {DATA_VS_RAW_GET}", False))
    if _enough(m.raw_get_cpu_s, m.restore_cpu_s):
        cpu = median(m.restore_cpu_s) / median(m.raw_get_cpu_s)
        rows.append(
            Row(
                "restore CPU-seconds / raw GET client CPU-seconds (whole processes)",
                f"{cpu:.2f} ({median(m.restore_cpu_s):.2f} s vs {median(m.raw_get_cpu_s):.2f} s)",
                f"<= {CPU_VS_RAW_GET}",
                cpu <= CPU_VS_RAW_GET,
            )
        )
    else:
        rows.append(Row("restore CPU / raw GET CPU", "not measured", f"<= {CPU_VS_RAW_GET}", False))
    rows.append(
        _ratio_row(
            "backup (first): speed-up vs restic 0.14 backup of the same image",
            BACKUP_VS_RESTIC,
            m.backup_s,
            m.restic_backup_s,
            m.restic_note,
        )
    )
    share = m.second_backup_uploaded / m.size
    rows.append(
        Row(
            "second backup after 1 % of the blocks changed: uploaded share of the image",
            f"{m.second_backup_uploaded / MiB:.1f} MiB = {100 * share:.2f} %",
            f"<= {100 * SECOND_BACKUP_UPLOAD:.0f} %",
            share <= SECOND_BACKUP_UPLOAD,
        )
    )
    for what, rss in (("restore", m.restore_rss_kib), ("backup", m.backup_rss_kib)):
        peak = max(rss) / 1024 if rss else float("inf")
        rows.append(
            Row(
                f"peak RSS of {what} (max of the runs)",
                f"{peak:.0f} MiB" if rss else "not measured",
                f"<= {PEAK_RSS_MIB} MiB",
                peak <= PEAK_RSS_MIB,
            )
        )
    one = mib / median(m.restore_cli_s) if m.restore_cli_s else 0.0
    if m.concurrent is not None:
        n, wall, all_ok = m.concurrent
        total = n * mib / wall
        rows.append(
            Row(
                f"{n} restores at once: total throughput vs one restore's",
                f"{wall:.1f} s: {total:.0f} MiB/s total vs {one:.0f} MiB/s for one; all verified: {all_ok}",
                ">= one",
                all_ok and total >= one,
            )
        )
    else:
        rows.append(Row("restores at once", "not measured (--concurrent 0)", ">= one", False))
    for cpus, secs in sorted(m.pinned_cpus.items()):
        rows.append(
            Row(
                f"restore pinned to {cpus} CPU{'s' if cpus > 1 else ''} (`taskset`), whole CLI",
                f"{runs(secs)}: {mib / median(secs):.0f} MiB/s of image",
                "(scaling, shown)",
            )
        )
    return rows


def all_met(rows: list[Row]) -> bool:
    return all(r.ok is not False for r in rows)
