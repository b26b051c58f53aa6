"""Build (or take from the cache) the demo servers' raw disk images.

Cache layout under the images directory (``$DRCTL_STATE_DIR/images``, else ``.state/images``)::

    base-<key>/rootfs/          the shared Debian root filesystem (rootfs.py)
    <server>-<key>.raw          a server's bootable disk (sparse, the plan's size)
    <server>-broken-<key>.raw   the variant with the server's main service masked
    ssh/id_ed25519[.pub]        the key that logs in as root on every demo guest (0600)
    secrets/catalogue-db        the demo database password (0600)

A server's key hashes its plan entry, what its roles read from the rest of the plan, the base, the
credentials' fingerprints and :data:`BUILDER_VERSION`: an image is rebuilt only when one changes.
A lock file serialises concurrent builds of the same cache; outdated images and bases are deleted
once unused for an hour. Change :data:`BUILDER_VERSION` with any change to what goes into a disk.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drctl import paths
from drctl.activation.targets.sandbox import guest_mac
from drctl.demo.images import disk, rootfs
from drctl.demo.images.roles import GuestFile, GuestSetup, RoleError, guest_setup
from drctl.demo.images.rootfs import ImageBuildFailed
from drctl.errors import InvalidInput
from drctl.plan.model import Plan, Server
from drctl.processes import run

log = logging.getLogger(__name__)

BUILDER_VERSION = "4"
CHROOT_TIMEOUT = 600.0  # seconds for one command in the image (systemctl, dropbearkey, postgres --single)
Progress = Callable[[str, str], None]  # (subject: "base" or a server name, message)


def default_images_dir() -> Path:
    """``images/`` in the state directory (:func:`drctl.paths.state_dir`)."""
    return paths.state_dir() / "images"


@dataclass(frozen=True)
class DemoImages:
    """The result of a build: one raw disk per server, and the key that logs in to them."""

    images: dict[str, Path]
    ssh_identity_file: Path
    built: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure_ssh_key(images_dir: Path) -> tuple[Path, str]:
    """The build's SSH key pair (generated once per cache): (private key path, public key line)."""
    priv = images_dir / "ssh" / "id_ed25519"
    pub = priv.with_name("id_ed25519.pub")
    if not (priv.exists() and pub.exists()):
        key = Ed25519PrivateKey.generate()
        _write_private(
            priv,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ),
        )
        line = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        pub.write_bytes(line + b" drctl-demo\n")
    os.chmod(priv, 0o600)
    return priv, pub.read_text().strip()


def ensure_db_password(images_dir: Path) -> str:
    path = images_dir / "secrets" / "catalogue-db"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(24).encode())
    return path.read_text().strip()


def server_macs(server: Server) -> list[str]:
    return [guest_mac(server.name, i) for i in range(len(server.nics))]


def image_key(plan: Plan, server: Server, *, broken: bool, credentials: str) -> str:
    """Hash of everything that decides the content of ``server``'s disk."""
    context = {
        "builder": BUILDER_VERSION,
        "base": rootfs.base_key(),
        "server": dataclasses.asdict(server),
        "client": [plan.client.id, plan.client.name],
        "sites": dataclasses.asdict(plan)["sites"],
        "neighbours": [
            [s.name, list(s.roles), [dataclasses.asdict(n) for n in s.nics]] for s in plan.servers
        ],
        "macs": server_macs(server),
        "credentials": credentials,
        "broken": broken,
    }
    return hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode()).hexdigest()[:16]


def image_name(server: str, key: str, broken: bool) -> str:
    return f"{server}-broken-{key}.raw" if broken else f"{server}-{key}.raw"


def _owner_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == user:
            return int(parts[2]), int(parts[3])
    raise ImageBuildFailed(f"user {user} does not exist in the base root filesystem {root}")


def _chroot(root: Path, argv: list[str], what: str, input: str | None = None) -> str:
    proc = run(
        ["chroot", str(root), *argv],
        what=f"{what} in the image",
        input=input,
        timeout=CHROOT_TIMEOUT,
        error=ImageBuildFailed,
    )
    return proc.stdout + proc.stderr


def _unit_exists(root: Path, unit: str) -> bool:
    return any(
        (root / d / unit).exists()
        for d in ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")
    )


def apply_setup(root: Path, setup: GuestSetup, authorized_key: str) -> None:
    """Write ``setup`` into the root filesystem copy ``root``."""
    for f in (*setup.files, GuestFile("/root/.ssh/authorized_keys", authorized_key + "\n", 0o600)):
        dest = root / f.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()  # never write through a symlink (e.g. /etc/resolv.conf)
        dest.write_text(f.content)
        os.chmod(dest, f.mode)
        uid, gid = _owner_ids(root, f.owner)
        os.chown(dest, uid, gid)
    _chroot(root, ["systemctl", "enable", *setup.enable], "systemctl enable")
    disable = [u for u in setup.disable if _unit_exists(root, u)]
    if disable:
        _chroot(root, ["systemctl", "disable", *disable], "systemctl disable")
    if setup.mask:
        _chroot(root, ["systemctl", "mask", *setup.mask], "systemctl mask")
    for kind in ("ed25519", "ecdsa"):
        _chroot(
            root, ["dropbearkey", "-t", kind, "-f", f"/etc/dropbear/dropbear_{kind}_host_key"], "dropbearkey"
        )
    for database, statements in setup.sql:
        out = _chroot(
            root,
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "/usr/lib/postgresql/15/bin/postgres",
                "--single",
                "-D",
                "/var/lib/postgresql/15/main",
                "-c",
                "config_file=/etc/postgresql/15/main/postgresql.conf",
                "-c",
                "dynamic_shared_memory_type=mmap",
                database,
            ],
            "loading the demo database",
            input=statements,
        )
        if re.search(r"\b(ERROR|FATAL):", out):
            raise ImageBuildFailed(f"loading the demo database {database} failed: {out.strip()[-400:]}")


class _CacheLock:
    def __init__(self, images_dir: Path) -> None:
        self.path = images_dir / ".lock"

    def __enter__(self) -> _CacheLock:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# Outdated images and bases are removed only once unused for this long: two checkouts (or a
# long-running session started before an upgrade) sharing a cache must not delete each other's.
PRUNE_AFTER_S = 3600


def _stale(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > PRUNE_AFTER_S
    except OSError:
        return False


def _prune(images_dir: Path, server: str, keep: Path, broken: bool) -> None:
    pattern = re.compile(rf"^{re.escape(server)}-{'broken-' if broken else ''}[0-9a-f]{{16}}\.raw$")
    for old in images_dir.glob(f"{server}-*.raw"):
        if old != keep and pattern.match(old.name) and _stale(old):
            log.info("removing the outdated image %s", old)
            old.unlink(missing_ok=True)


def ensure_base(images_dir: Path, progress: Progress) -> Path:
    key = rootfs.base_key()
    target = images_dir / f"base-{key}" / "rootfs"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    progress("base", "building the Debian bookworm base with mmdebstrap (first time only, about 1-2 min)")
    t0 = time.monotonic()
    rootfs.build_base_rootfs(target, log_path=target.parent / "mmdebstrap.log")
    progress("base", f"base built in {time.monotonic() - t0:.0f} s")
    for old in images_dir.glob("base-*"):
        if old != target.parent and old.is_dir() and _stale(old):
            shutil.rmtree(old, ignore_errors=True)
    return target


def build_demo_images(
    plan: Plan,
    *,
    images_dir: Path | None = None,
    servers: Iterable[str] | None = None,
    broken: Iterable[str] = (),
    progress: Progress | None = None,
) -> DemoImages:
    """Make sure every (selected) server of ``plan`` has its raw disk in the cache; build what is missing.

    ``broken`` names servers to build with their main service masked (the "broken image" drill).
    """
    images_dir = (images_dir or default_images_dir()).resolve()
    images_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda subject, msg: log.info("%s: %s", subject, msg))
    names = list(servers) if servers is not None else [s.name for s in plan.servers]
    broken_set = set(broken)
    unknown = [n for n in [*names, *broken_set] if n not in {s.name for s in plan.servers}]
    if unknown:
        raise InvalidInput(
            f"no server named {', '.join(sorted(set(unknown)))} in the plan of client {plan.client.id}"
        )
    images: dict[str, Path] = {}
    built: list[str] = []
    cached: list[str] = []
    seconds: dict[str, float] = {}
    with _CacheLock(images_dir):
        identity, pub = ensure_ssh_key(images_dir)
        password = ensure_db_password(images_dir)
        credentials = hashlib.sha256(f"{pub}\n{password}".encode()).hexdigest()[:16]
        todo = []
        for name in names:
            server = plan.server(name)
            is_broken = name in broken_set
            path = images_dir / image_name(
                name, image_key(plan, server, broken=is_broken, credentials=credentials), is_broken
            )
            images[name] = path
            if path.exists():
                os.utime(path)  # marks it in use (see PRUNE_AFTER_S)
                cached.append(name)
                say(name, f"cached image {path.name}")
            else:
                todo.append((server, path, is_broken))
        if todo:
            base = ensure_base(images_dir, say)
            for server, path, is_broken in todo:
                t0 = time.monotonic()
                say(server.name, "building the disk image" + (" (broken variant)" if is_broken else ""))
                _build_one(plan, server, base, path, is_broken, pub, password)
                _prune(images_dir, server.name, path, is_broken)
                seconds[server.name] = round(time.monotonic() - t0, 1)
                built.append(server.name)
                say(server.name, f"built {path.name} in {seconds[server.name]:.0f} s")
    return DemoImages(
        images=images, ssh_identity_file=identity, built=tuple(built), cached=tuple(cached), seconds=seconds
    )


def _build_one(
    plan: Plan, server: Server, base: Path, path: Path, broken: bool, pub: str, password: str
) -> None:
    try:
        setup = guest_setup(plan, server, macs=server_macs(server), db_password=password, broken=broken)
    except RoleError as e:
        raise InvalidInput(str(e)) from e
    work = path.with_name(f".work-{server.name}-{os.getpid()}")
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir()
        run(
            ["cp", "-a", "--reflink=auto", str(base), str(work / "rootfs")],
            what=f"copying the base for {server.name}",
            timeout=None,
            error=ImageBuildFailed,
        )
        apply_setup(work / "rootfs", setup, pub)
        disk.make_bootable_disk(work / "rootfs", partial, server.boot_disk.size_gb * 1024**3)
        os.replace(partial, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        partial.unlink(missing_ok=True)
