"""``drctl protect STACK --units DIR``: the systemd units that run ``drctl protect`` on each
recovered server's plan schedule while a disaster activation runs (rendered by the agent's
:mod:`drctl.agent.units`: same timers, same environment file, no secret in a unit)."""

from __future__ import annotations

from pathlib import Path

from drctl.activation.protection import agent_config, run_of, scope_of
from drctl.stack.config import load_stack


def unit_files(
    stack: str,
    state_dir: Path,
    drctl: str,
    *,
    servers: tuple[str, ...] | None = None,
    key_dir: Path | None = None,
    project_dir: Path | None = None,
    password_file: str | None = None,
    password_command: str | None = None,
) -> tuple[dict[str, str], list[str]]:
    """systemd service + timer units running ``drctl protect STACK --servers S --type T`` for each
    recovered server of the active disaster run, one timer per entry of its plan schedule (the
    agent's units, :mod:`drctl.agent.units`, without the prune: the client's own agents prune)."""
    from drctl.agent.units import render_units

    cfg = load_stack(stack, project_dir)
    _, summary = run_of(state_dir, stack)
    files: dict[str, str] = {}
    skipped: list[str] = []
    for name in scope_of(summary, servers):
        server = cfg.plan.server(name)
        job_cfg = agent_config(cfg, server, [], state_dir, Path("/"))

        def command(job_type: str, name: str = name) -> list[str]:
            argv = [
                drctl,
                "protect",
                stack,
                "--servers",
                name,
                "--type",
                job_type,
                "--state-dir",
                str(state_dir),
            ]
            if key_dir:
                argv += ["--agent-keys", str(key_dir)]
            if project_dir:
                argv += ["--project-dir", str(project_dir)]
            return argv

        units = render_units(
            job_cfg,
            Path("/"),
            drctl,
            password_file=password_file,
            password_command=password_command,
            base=f"drctl-protect-{stack}-{name}",
            command=command,
            prune=False,
            rendered_by=f"drctl protect {stack} --units",
        )
        files.update(units.files)
        skipped += [f"{name}: {s}" for s in units.skipped]
    return files, skipped
