"""``drctl export STACK --to DIR``: every server's latest restore point (or every point) restored,
verified, to standard disk images, with the plan, the stack's non-secret settings, the signed run
reports and their public key, ``SHA256SUMS`` and a README (layout: :mod:`drctl.export.layout`).

Nothing half-written is presented as complete: everything is written in ``DIR/.partial`` (0700,
files 0600), then moved into ``DIR``, ``SHA256SUMS`` last, and ``.partial`` removed. An export
interrupted before that leaves only ``DIR/.partial``, which the next export into ``DIR`` discards.
No secret enters the export: not the repository password, not a ``secure:`` stack value (VPN
PSKs), not the stack passphrase, not the report-signing private key."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from cryptography.hazmat.primitives import serialization

from drctl.errors import DrctlError, InvalidInput, LocalIOError, ToolMissing
from drctl.export import layout
from drctl.repo.manifest import utc_iso
from drctl.repo.progress import NullProgress, ProgressSink
from drctl.repo.repository import Repository
from drctl.repo.restore import restore_point
from drctl.runs import signing
from drctl.runs.store import FILES, RunStore
from drctl.stack.config import StackConfig, plan_path
from drctl.stack.settings import SECRET_SETTINGS

log = logging.getLogger(__name__)
EventFn = Callable[[str, dict[str, Any]], None]
FORMATS = ("qcow2", "raw")


@dataclass
class ExportResult:
    stack: str
    path: Path
    format: str
    images: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    plan: str = ""
    omitted_settings: list[str] = field(default_factory=list)
    public_key: str | None = None
    files: int = 0
    duration_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "path": str(self.path),
            "format": self.format,
            "images": self.images,
            "reports": self.reports,
            "plan": self.plan,
            "omitted_settings": self.omitted_settings,
            "public_key": self.public_key,
            "files": self.files,
            "duration_s": round(self.duration_s, 2),
        }


def check_target(to: Path) -> None:
    """DIR must be absent or an empty directory of ours (a leftover ``.partial`` of an interrupted
    export is allowed: it is discarded). Checked before anything is read or written."""
    if to.is_symlink() or (to.exists() and not to.is_dir()):
        raise InvalidInput(
            f"export target {to} exists and is not a directory: give an empty or absent directory"
        )
    if to.is_dir():
        st = to.stat()
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise InvalidInput(
                f"export target {to} is not your own directory or is writable by others: the export holds "
                "the client's data; give a directory of yours (chmod 700) or an absent one"
            )
        left = [p.name for p in to.iterdir() if p.name != layout.PARTIAL]
        if left:
            raise InvalidInput(
                f"export target {to} is not empty ({', '.join(sorted(left)[:3])}...): an export is written "
                "only into an empty or absent directory; choose another one or empty it"
            )


def export_stack(
    cfg: StackConfig,
    repo: Repository,
    to: Path,
    *,
    state_dir: Path,
    fmt: str = "qcow2",
    all_points: bool = False,
    parallel: int = 16,
    progress: ProgressSink | None = None,
    on_event: EventFn | None = None,
) -> ExportResult:
    """Write the export of ``cfg``'s stack into ``to`` (see the module docstring)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "qcow2" and shutil.which("qemu-img") is None:
        raise ToolMissing("--format qcow2 needs `qemu-img` (Debian package qemu-utils); or use --format raw")
    check_target(to)
    t0 = time.monotonic()
    emit = on_event or (lambda kind, data: None)
    result = ExportResult(stack=cfg.stack, path=to, format=fmt)
    created = not to.exists()
    work = to / layout.PARTIAL
    try:
        to.mkdir(mode=0o700, parents=True, exist_ok=True)
        if work.is_symlink():
            work.unlink()
        shutil.rmtree(work, ignore_errors=True)  # an interrupted export's leftovers
        work.mkdir(mode=0o700)
    except OSError as e:
        raise LocalIOError(f"cannot create the export directory {work}: {e.strerror}") from e
    try:
        _fill(cfg, repo, work, result, state_dir, all_points, parallel, progress or NullProgress(), emit)
        _publish(work, to)
    except BaseException as e:
        # Nothing half-written stays: not the partial export, not a directory this run created.
        shutil.rmtree(work, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                to.rmdir()
        if isinstance(e, OSError):
            raise LocalIOError(f"export to {to} failed, nothing was kept: {e}") from e
        raise
    result.duration_s = time.monotonic() - t0
    return result


def _fill(
    cfg: StackConfig,
    repo: Repository,
    work: Path,
    result: ExportResult,
    state_dir: Path,
    all_points: bool,
    parallel: int,
    progress: ProgressSink,
    emit: EventFn,
) -> None:
    """Write every part of the export into ``work``."""
    fmt = result.format
    with repo.lock(exclusive=False, operation="export"):
        points = layout.select(repo.load_points(), all_points=all_points)  # any unreadable one: exit 13
        if not points:
            raise InvalidInput(
                f"repository {repo.describe()} of stack {cfg.stack} holds no restore point: nothing to export"
            )
        for p in points:
            rel = layout.image_name(p, fmt, dated=all_points)
            out = work / rel
            _mkdirs(out.parent)
            restore_point(
                repo,
                p,
                out,
                fmt=layout.image_format(p, fmt),
                parallel=parallel,
                progress=progress,
            )
            entry = {
                "file": rel.as_posix(),
                "server": p.server,
                "disk": p.disk,
                "point": p.id,
                "created": utc_iso(p.created),
                "virtual_size": p.size,
                "format": "tar" if p.disk in layout.TAR_DISKS else fmt,
                "verified_digest": p.digest_label,
            }
            result.images.append(entry)
            emit("export-image", {k: entry[k] for k in ("server", "disk", "point", "file")})
    result.plan = _write_plan(cfg, work)
    result.omitted_settings = _write_settings(cfg, work)
    result.reports, result.public_key = _write_reports(cfg.stack, state_dir, work)
    _write(work / layout.INDEX, json.dumps(_index(result), indent=2) + "\n")
    _write(work / layout.README, render_readme(result))
    sums = layout.sums_text(work)
    _write(work / layout.SUMS, sums)
    result.files = sums.count("\n") + 1


def _mkdirs(d: Path) -> None:
    """``d`` and its missing parents, each 0700 (mkdir's ``parents`` would use the umask)."""
    for part in reversed([d, *d.parents]):
        if not part.exists():
            part.mkdir(mode=0o700)


def _write(path: Path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    _mkdirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise LocalIOError(f"cannot write {path}: {e.strerror}") from e


def _write_plan(cfg: StackConfig, work: Path) -> str:
    src = plan_path(cfg.project_dir, cfg.settings.plan, str(cfg.path))
    rel = f"plan/{src.name}"
    _write(work / rel, src.read_bytes())
    return rel


def _write_settings(cfg: StackConfig, work: Path) -> list[str]:
    """The stack's settings without any secret; the names of the omitted ones."""
    omitted = sorted(set(cfg.secret_keys) | (SECRET_SETTINGS & set(cfg.values)))
    kept = {k: v for k, v in sorted(cfg.values.items()) if k not in omitted}
    doc = {"stack": cfg.stack, "settings": kept, "omitted_secrets": omitted}
    _write(work / "stack" / "settings.json", json.dumps(doc, indent=2, default=str) + "\n")
    return omitted


def _write_reports(stack: str, state_dir: Path, work: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Every stored run report of the stack (its three files as signed) and the public key."""
    store = RunStore(state_dir)
    out = []
    for run in store.list_runs(stack):
        rid = run.path.name
        # The signed files, and whatever else the run recorded beside them (a deactivation's
        # decision record): regular files only, never through a link.
        names = sorted({*FILES, *(f.name for f in run.path.iterdir() if f.is_file() and not f.is_symlink())})
        for name in names:
            _write(work / "reports" / rid / name, (run.path / name).read_bytes())
        try:
            store.verify(run.path)
            verified = True
        except DrctlError as e:  # recorded in the index and the README: the client sees it
            log.warning("report %s does not verify: %s", rid, e.message)
            verified = False
        out.append(
            {
                "run_id": rid,
                "kind": run.summary.kind,
                "mode": run.summary.mode,
                "signature_verified": verified,
                "files": names,
            }
        )
    key_path = store.key_path()
    pub_path = signing.public_key_path(key_path)
    if pub_path.is_file():
        public = signing.load_public_key(pub_path)
    elif key_path.is_file():
        public = signing.load_private_key(key_path).public_key()  # only its public half is written
    else:
        return out, None
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write(work / "reports" / "report-signing.pub", pem)
    return out, "reports/report-signing.pub"


def _index(result: ExportResult) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "exported_at": layout.stamp(),
        "format": result.format,
        "images": result.images,
        "plan": result.plan,
        "settings": "stack/settings.json",
        "omitted_secrets": result.omitted_settings,
        "reports": result.reports,
        "public_key": result.public_key,
    }


def render_readme(result: ExportResult) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("drctl.export", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # plain text
    )
    return env.get_template("README.txt.j2").render(r=result, sums=layout.SUMS, index=layout.INDEX)


def _publish(work: Path, to: Path) -> None:
    """Move the finished export from ``DIR/.partial`` into ``DIR``: SHA256SUMS last, so a listing
    that shows it shows a complete export; then ``.partial`` goes."""
    names = sorted(p.name for p in work.iterdir() if p.name != layout.SUMS) + [layout.SUMS]
    try:
        for name in names:
            os.rename(work / name, to / name)
        work.rmdir()
        dfd = os.open(to, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise LocalIOError(f"cannot move the export from {work} into {to}: {e.strerror}") from e
