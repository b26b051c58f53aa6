"""Prepare the demo client's backups the way its nightly agents would: build (or reuse) the five
demo servers' disk images, then back each one up into the client's encrypted repository in the
embedded object store. ``drctl demo prepare`` calls this; ``drctl drill demo`` then restores them.

The demo repository's password is generated once into ``<state>/demo/password`` (0600): it
stands for the key only the client holds. A real client's password never sits on this machine.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

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
    """Images built or reused, then one restore point per server disk; returns what was done."""
    from drctl.demo.images.builder import build_demo_images
    from drctl.repo.backup import backup_disk

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
    points = {}
    for server in plan.servers:
        disk = server.boot_disk.name
        result = backup_disk(repo, images.images[server.name], server=server.name, disk=disk)
        points[server.name] = result.point.id
        say(server.name, f"backed up {disk} as restore point {points[server.name]}")
    return {
        "repository": url,
        "points": points,
        "broken": sorted(broken),
        "password_file": str(demo_password_file(state_dir)),
    }
