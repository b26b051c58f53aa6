"""Where run reports live: locally under the state directory, and in the client's report bucket.

Layout (the same below the bucket's ``reports/`` prefix)::

    <state dir>/runs/<stack>/<run_id>/summary.json   canonical bytes of the RunSummary
                                     /report.html    the rendered page
                                     /report.sig     Ed25519 signature over both

The state directory is ``$DRCTL_STATE_DIR``, else ``.state`` in the current directory.
A run directory is written whole (temporary directory, then rename), so a listing never sees a
half-written run. The upload goes through the :class:`drctl.storage.base.Storage` interface given
to the constructor (``drctl.storage.open_storage(url)`` builds one for the client's bucket).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from drctl import paths
from drctl.errors import InvalidInput, LocalIOError
from drctl.paths import check_stack_name
from drctl.runs import signing as report_signing
from drctl.runs.model import RunSummary, SummaryInvalid
from drctl.runs.report import render_html
from drctl.storage.base import Storage, StorageError

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
HTML = "report.html"
SIGNATURE = "report.sig"
FILES = (SUMMARY, HTML, SIGNATURE)
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunNotFound(InvalidInput):
    """No stored run has this id."""


class ReportUploadFailed(StorageError):
    """The report is stored locally but could not be uploaded to the client's report bucket."""


def _safe(kind: str, value: str) -> str:
    if not _SAFE.match(value):
        raise InvalidInput(f"{kind} {value!r}: use letters, digits, '.', '_' or '-' (it names a directory)")
    return value


@dataclass(frozen=True)
class StoredRun:
    """A run on disk: its directory and the summary read from it."""

    path: Path
    summary: RunSummary

    @property
    def html_path(self) -> Path:
        return self.path / HTML

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def signature_path(self) -> Path:
        return self.path / SIGNATURE


@dataclass(frozen=True)
class UnreadableRun:
    """A run directory whose summary could not be read or parsed."""

    summary_path: Path
    run_id: str
    problem: str  # what is wrong with it, without the path


def _write_files(directory: Path, files: dict[str, bytes]) -> None:
    """Each file of a run version into its (temporary) directory, on disk before it is renamed."""
    for name, data in files.items():
        with open(directory / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


class RunStore:
    """Stores, lists, finds and verifies runs. ``storage`` (optional) is the client's report
    bucket; ``prefix`` is where runs go in it."""

    def __init__(
        self, state_dir: Path | None = None, storage: Storage | None = None, *, prefix: str = "reports"
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else paths.state_dir()
        self.storage = storage
        self.prefix = prefix.strip("/")

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    def key_path(self) -> Path:
        return report_signing.default_key_path(self.state_dir)

    # -- writing ---------------------------------------------------------------------------------

    def record(self, summary: RunSummary, key: Ed25519PrivateKey | None = None) -> StoredRun:
        """Render, sign, store locally, then upload. ``key`` defaults to the operator's key
        (created on first use). Raises :class:`ReportUploadFailed` after the local copy is safe."""
        key = key or report_signing.load_or_create_key(self.key_path())
        summary_bytes = summary.canonical_bytes()
        html_bytes = render_html(summary).encode("utf-8")
        sig = report_signing.sign(summary_bytes, html_bytes, key)
        files = {SUMMARY: summary_bytes, HTML: html_bytes, SIGNATURE: sig}
        path = self._write_local(summary, files)
        if self.storage is not None:
            self.upload(summary, files, path)
        return StoredRun(path, summary)

    def amend(self, summary: RunSummary, key: Ed25519PrivateKey | None = None) -> StoredRun:
        """Store a new version of an already stored run (a disaster activation's report gains the
        backups taken while it runs): rendered and signed again, its directory replaced whole (the
        files beside the report, e.g. deactivation records, are kept), then uploaded."""
        key = key or report_signing.load_or_create_key(self.key_path())
        summary_bytes = summary.canonical_bytes()
        html_bytes = render_html(summary).encode("utf-8")
        files = {
            SUMMARY: summary_bytes,
            HTML: html_bytes,
            SIGNATURE: report_signing.sign(summary_bytes, html_bytes, key),
        }
        final = self.runs_dir / check_stack_name(summary.stack) / _safe("run id", summary.run_id)
        if not final.is_dir():
            raise RunNotFound(f"run {summary.run_id} is not stored under {final.parent}: nothing to amend")
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{summary.run_id}.", dir=final.parent))
            old = tmp.with_name(tmp.name + ".old")
            try:
                for other in final.iterdir():
                    if other.name not in FILES and other.is_file():
                        shutil.copy2(other, tmp / other.name)
                _write_files(tmp, files)
                os.rename(final, old)
                try:
                    os.rename(tmp, final)
                except OSError:
                    os.rename(old, final)
                    raise
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            raise LocalIOError(f"cannot store the new version of run {summary.run_id} in {final}: {e}") from e
        if self.storage is not None:
            self.upload(summary, files, final)
        return StoredRun(final, summary)

    def _write_local(self, summary: RunSummary, files: dict[str, bytes]) -> Path:
        parent = self.runs_dir / check_stack_name(summary.stack)
        final = parent / _safe("run id", summary.run_id)
        try:
            parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                raise InvalidInput(
                    f"run {summary.run_id} is already stored at {final}; run ids are never reused"
                )
            tmp = Path(tempfile.mkdtemp(prefix=f".{summary.run_id}.", dir=parent))
            try:
                _write_files(tmp, files)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        except OSError as e:
            raise LocalIOError(f"cannot store run {summary.run_id} under {parent}: {e}") from e
        log.info("stored run %s at %s", summary.run_id, final)
        return final

    def upload(
        self, summary: RunSummary, files: dict[str, bytes] | None = None, local_path: Path | None = None
    ) -> list[str]:
        """Put the run's files in the report bucket; returns the keys written."""
        if self.storage is None:
            raise InvalidInput("no report bucket configured for this store")
        if files is None:
            stored = self.find(summary.run_id)
            files = {n: (stored.path / n).read_bytes() for n in FILES}
            local_path = stored.path
        keys = []
        base = (
            f"{self.prefix}/{summary.stack}/{summary.run_id}"
            if self.prefix
            else f"{summary.stack}/{summary.run_id}"
        )
        # The signature last: a reader who sees report.sig sees the files it covers.
        for name in (SUMMARY, HTML, SIGNATURE):
            key = f"{base}/{name}"
            try:
                self.storage.put(key, files[name])
            except StorageError as e:
                raise ReportUploadFailed(
                    f"report of run {summary.run_id} is stored locally at {local_path}, but uploading "
                    f"{key} to {self.storage.describe()} failed: {e.message}. Fix the bucket access and "
                    f"run `drctl report upload {summary.run_id} --to {self.storage.describe()}`"
                ) from e
            keys.append(key)
        log.info("uploaded run %s to %s/%s", summary.run_id, self.storage.describe(), base)
        return keys

    # -- reading ---------------------------------------------------------------------------------

    def _load(self, path: Path) -> StoredRun:
        try:
            data = (path / SUMMARY).read_bytes()
        except OSError as e:
            raise LocalIOError(f"cannot read {path / SUMMARY}: {e}") from e
        return StoredRun(path, RunSummary.from_json(data, str(path / SUMMARY)))

    def _run_dirs(self, stack: str) -> list[Path]:
        d = self.runs_dir / check_stack_name(stack)
        if not d.is_dir():
            return []
        return [p for p in sorted(d.iterdir()) if p.is_dir() and not p.name.startswith(".")]

    def list_runs(self, stack: str) -> list[StoredRun]:
        """Runs of ``stack``, oldest first (run ids sort by start time). An unreadable summary
        raises (:class:`~drctl.runs.model.SummaryInvalid` or :class:`LocalIOError`, naming it)."""
        return [self._load(p) for p in self._run_dirs(stack)]

    def read_runs(self, stack: str) -> tuple[list[StoredRun], list[UnreadableRun]]:
        """Like :meth:`list_runs`, but a summary that cannot be read or parsed is returned apart
        instead of raising: for a reader (``drctl status``) that reports it and goes on."""
        runs, unreadable = [], []
        for p in self._run_dirs(stack):
            try:
                runs.append(self._load(p))
            except (SummaryInvalid, LocalIOError) as e:
                problem = e.message.removeprefix(f"{p / SUMMARY}: ").removeprefix("run summary: ")
                unreadable.append(UnreadableRun(p / SUMMARY, p.name, problem))
        return runs, unreadable

    def _candidates(self, run_id: str) -> Iterator[Path]:
        if not self.runs_dir.is_dir():
            return
        for stack_dir in sorted(self.runs_dir.iterdir()):
            p = stack_dir / run_id
            if p.is_dir():
                yield p

    def find(self, run_id: str) -> StoredRun:
        """The run with this id, in whatever stack (a unique prefix of the id is enough)."""
        _safe("run id", run_id)
        exact = list(self._candidates(run_id))
        if exact:
            return self._load(exact[0])
        matches = []
        if self.runs_dir.is_dir():
            matches = sorted(
                p for p in self.runs_dir.glob(f"*/{run_id}*") if p.is_dir() and not p.name.startswith(".")
            )
        if len(matches) == 1:
            return self._load(matches[0])
        if len(matches) > 1:
            raise InvalidInput(f"run id {run_id!r} is ambiguous: " + ", ".join(p.name for p in matches[:5]))
        raise RunNotFound(f"no run {run_id!r} under {self.runs_dir}: list them with `drctl runs STACK`")

    def verify(self, path: Path, public: Ed25519PublicKey | None = None) -> str:
        """Check the run directory ``path`` against its signature; returns the key id.
        Raises :class:`drctl.runs.signing.ReportTampered` (exit 13) naming the file at fault."""
        if public is None:
            kp = self.key_path()
            pub = report_signing.public_key_path(kp)
            if pub.exists():
                public = report_signing.load_public_key(pub)
            elif kp.exists():
                public = report_signing.load_private_key(kp).public_key()
            else:
                raise InvalidInput(
                    f"no report-verification key: neither {pub} nor {kp} exists; give --public-key FILE"
                )
        data = {}
        for name in FILES:
            try:
                data[name] = (path / name).read_bytes()
            except FileNotFoundError as e:
                raise report_signing.ReportTampered(
                    f"{path / name} is missing: the report is incomplete"
                ) from e
            except OSError as e:
                raise LocalIOError(f"cannot read {path / name}: {e}") from e
        files = report_signing.ReportFiles(
            data[SUMMARY],
            data[HTML],
            data[SIGNATURE],
            str(path / SUMMARY),
            str(path / HTML),
            str(path / SIGNATURE),
        )
        return report_signing.verify(files, public)
