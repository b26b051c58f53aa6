"""The status benchmark's generated clients are real: their plans pass validation, their stacks load."""

from __future__ import annotations

from benchmarks.status_benchmark import write_project
from drctl.status.clients import load_client, stack_names


def test_generated_stacks_and_plans_load(tmp_path) -> None:
    keys = write_project(tmp_path / "project", 2, 20, "bench")
    assert stack_names(tmp_path / "project") == ["client00", "client01"]
    source = load_client("client01", tmp_path / "project")
    assert source.vault == "s3://bench/client01"
    assert len(source.plan.servers) == 20 and all(len(s.disks) == 2 for s in source.plan.servers)
    assert {s.protection for s in source.plan.servers} == {"dr", "backup-tested", "backup-only"}
    assert set(source.agent_keys) == set(keys["client01"])
