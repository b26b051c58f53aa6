"""The restore benchmark's verdicts (benchmarks/targets.py): every target of the speed issue is a
row, PASS only when met by medians of at least three rounds, and one MISS makes the run fail."""

from __future__ import annotations

from dataclasses import replace

from benchmarks.targets import Measured, MiB, all_met, target_rows

SIZE = 2048 * MiB


def good() -> Measured:
    return Measured(
        size=SIZE,
        raw_get_s=[1.0, 1.1, 0.9],
        raw_get_cpu_s=[1.0, 1.0, 1.0],
        restore_cli_s=[3.0, 3.1, 2.9],
        restore_data_s=[1.5, 1.6, 1.4],
        restore_cpu_s=[1.9, 2.0, 1.8],
        restore_rss_kib=[200 * 1024] * 3,
        backup_s=[5.0, 5.0, 5.0],
        backup_rss_kib=[180 * 1024] * 3,
        second_backup_uploaded=int(0.01 * SIZE),
        restic_restore_s=[4.6, 4.5, 4.7],
        restic_backup_s=[10.0, 10.2, 9.9],
        concurrent=(10, 25.0, True),
        pinned_cpus={1: [6.0, 6.1, 5.9], 2: [3.5, 3.4, 3.6]},
    )


def verdicts(m: Measured) -> dict[str, bool | None]:
    return {r.measure.split(":")[0]: r.ok for r in target_rows(m)}


def test_all_targets_met_passes_and_prints_every_row():
    rows = target_rows(good())
    assert all_met(rows)
    assert sum(r.ok is True for r in rows) == 8  # the eight targets
    assert "| PASS |" in rows[0].cells() and "1.53x" in rows[0].result  # 4.6 / 3.0 medians
    pinned = [r for r in rows if "taskset" in r.measure]
    assert [r.ok for r in pinned] == [None, None] and "341 MiB/s" in pinned[0].result


def test_each_miss_is_marked_and_fails_the_run():
    cases = {
        "restore, whole CLI": replace(good(), restic_restore_s=[4.0, 4.0, 4.0]),
        "restore data phase throughput / raw parallel GET of the same objects": replace(
            good(), restore_data_s=[2.0, 2.0, 2.0]
        ),
        "restore CPU-seconds / raw GET client CPU-seconds (whole processes)": replace(
            good(), restore_cpu_s=[2.5, 2.5, 2.5]
        ),
        "backup (first)": replace(good(), restic_backup_s=[9.0, 9.0, 9.0]),
        "second backup after 1 % of the blocks changed": replace(good(), second_backup_uploaded=SIZE // 40),
        "peak RSS of backup (max of the runs)": replace(good(), backup_rss_kib=[100, 257 * 1024, 100]),
        "10 restores at once": replace(good(), concurrent=(10, 25.0, False)),
    }
    for name, m in cases.items():
        rows = target_rows(m)
        assert verdicts(m)[name] is False, name
        assert not all_met(rows), name
        assert sum(r.ok is False for r in rows) == 1, name
        assert any("**MISS**" in r.cells() for r in rows)


def test_a_target_not_measured_is_a_miss_never_a_pass():
    no_restic = replace(
        good(), restic_restore_s=[], restic_backup_s=[], restic_note="restic is not installed"
    )
    rows = target_rows(no_restic)
    missed = [r for r in rows if r.ok is False]
    assert len(missed) == 2 and all("restic is not installed" in r.result for r in missed)
    two_rounds = replace(good(), restore_cli_s=[3.0, 3.0])
    assert not all_met(target_rows(two_rounds))
    assert not all_met(target_rows(replace(good(), concurrent=None)))
