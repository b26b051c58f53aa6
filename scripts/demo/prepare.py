"""Prepare the demo client's backups with its agents: build (or reuse) the five demo servers' disk
images, then per server render the agent's config (``drctl agent config``: each disk mapped to its
image with the ``none`` method, the built images being quiet) and run one full job (``drctl agent
run``): the backup into the client's encrypted repository in the embedded object store, and the
job's signed status record beside it. Then the database server (role ``sql``, a ``log``
schedule) runs on after its disk point and archives its WAL into the same repository
(:mod:`drctl.demo.wal_archive`). ``drctl demo prepare`` calls this; ``drctl drill demo`` then
restores them, the database replayed to its last archived segment.

The agents' configs and keys live in ``<state>/demo/agents/`` (keys kept across runs); like
``drctl agent config``, the first run records each agent's public key in the demo stack file
(``flexible-recovery:agent_keys.<server>``).

The demo repository's password is generated once into ``<state>/demo/password`` (0600): it
stands for the key only the client holds. A real client's password never sits on this machine.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from drctl.agent.config import load_config
from drctl.repo.errors import RepoMissing
from drctl.repo.repository import FORMAT_VERSION, init_repository, open_repository, upgrade_repository
from drctl.stack.config import load_stack
from drctl.storage import open_storage

log = logging.getLogger(__name__)
STACK = "demo"


def demo_password_file(state_dir: Path) -> Path:
    path = Path(state_dir) / "demo" / "password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


def prepare_demo(
    state_dir: Path, *, broken: Iterable[str] = (), progress: Callable[[str, str], None] | None = None
) -> dict:
    """Images built or reused, then one agent job (full backup) per server; returns what was done."""
    from drctl.agent.job import run_job
    from drctl.agent.render import map_disks, render
    from drctl.demo.images.builder import build_demo_images
    from drctl.demo.wal_archive import LATE_ITEM, archive_demo_wal, record_disk_base
    from drctl.wal.stage import has_log_schedule

    say = progress or (lambda who, msg: log.info("%s: %s", who, msg))
    cfg = load_stack(STACK)
    plan = cfg.plan
    images = build_demo_images(plan, images_dir=Path(state_dir) / "images", broken=broken, progress=say)
    password = demo_password_file(state_dir).read_text().strip().encode()
    url = cfg.settings.repository_url(plan)
    storage = open_storage(url)
    try:
        repo = open_repository(storage, password)
    except RepoMissing:
        say("repository", f"creating the demo client's encrypted repository at {url}")
        repo = init_repository(storage, password)
    if repo.config.version < FORMAT_VERSION:  # the demo's own repository, from an older drctl
        say("repository", f"upgrading the demo repository to format {FORMAT_VERSION} (`drctl repo upgrade`)")
        upgrade_repository(repo)
    agents = Path(state_dir).resolve() / "demo" / "agents"
    points, jobs = {}, {}
    for server in plan.servers:
        disks = map_disks(cfg, server.name, [f"{server.boot_disk.name}={images.images[server.name]}:none"])
        rendered = render(cfg, server.name, disks, agents, state_dir=agents / server.name)
        outcome = run_job(
            load_config(rendered.config_path),
            "full",
            lambda st: open_repository(st, password),
            storage=storage,
        )
        points[server.name] = outcome.record.points[server.boot_disk.name]
        jobs[server.name] = outcome.record.job_id
        say(
            server.name,
            f"agent job {outcome.record.job_id}: {server.boot_disk.name} backed up as restore point "
            f"{points[server.name]}",
        )
    # The database's day after its disk point: what its PostgreSQL archives (drctl.demo.wal_archive).
    wal = {}
    for server in plan.servers:
        if "sql" in server.roles and has_log_schedule(server):
            archived = archive_demo_wal(
                images.images[server.name],
                server=server.name,
                repo_url=url,
                password=password,
                images_dir=Path(state_dir) / "images",
            )
            wal[server.name] = archived.as_dict()
            record_disk_base(repo, server.name, points[server.name])
            say(
                server.name,
                f"PostgreSQL committed item {LATE_ITEM[0]} after the disk point and archived its WAL "
                f"(`drctl wal push`) up to segment {archived.segment}",
            )
    return {
        "repository": url,
        "points": points,
        "wal": wal,
        "jobs": jobs,
        "agent_configs": str(agents),
        "broken": sorted(broken),
        "password_file": str(demo_password_file(state_dir)),
    }
