"""Bad repository objects, through the public API and the CLI: manifests (authenticated with the
repository's own key, so the parser behind the MAC is what is tested), key slots, the config and
locks, each a mutation of a real one. A bad object is a :class:`DrctlError` with its exit code
(13 for damaged data, 11 for a lock, 12 when no slot opens), never another exception."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drctl.errors import DrctlError
from drctl.repo.backup import backup_disk
from drctl.repo.crypto import KdfParams, open_manifest, seal_manifest
from drctl.repo.errors import RepoLocked
from drctl.repo.keys import slot_key
from drctl.repo.locks import LOCKS_PREFIX, RepoLock, read_locks, remove_locks
from drctl.repo.manifest import point_key
from drctl.repo.repository import CONFIG_KEY, init_repository, open_repository
from drctl.repo.restore import restore_disk
from drctl.storage.local import LocalDirStorage
from tests.bad_input.mutations import CORPUS, VALUES, assert_clean_failure, drctl_many, mutated_document
from tests.repo.fakes import MiB, make_image

PASSWORD = b"corpus-password-1"
FAST_KDF = KdfParams(n=2**10, r=8, p=1)  # keeps every open cheap; the parser is what is tested


class Fixture:
    """A small real repository in a directory (one point of a 3 MiB image) and its objects."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.storage = LocalDirStorage(root / "repo")
        self.storage.create()
        self.repo = init_repository(self.storage, PASSWORD, chunk_size=MiB, kdf=FAST_KDF)
        image = make_image(root / "disk.img", 3 * MiB + 12345)
        self.point = backup_disk(self.repo, image, server="web", disk="vda").point
        self.manifest_key = point_key(self.point.id)
        self.manifest_blob = self.storage.get(self.manifest_key)
        self.manifest_doc = open_manifest(
            self.repo.keys, self.repo.repo_id, self.point.id, self.manifest_blob, self.manifest_key
        )
        self.slot_key = slot_key(self.repo.key_id)
        self.slot_blob = self.storage.get(self.slot_key)
        self.config_blob = self.storage.get(CONFIG_KEY)
        lock = RepoLock(self.storage, exclusive=False, operation="backup")
        lock._write(lock.created)
        self.lock_doc = json.loads(self.storage.get(lock.key))
        self.storage.delete(lock.key)

    def clean(self) -> None:
        """Remove restored outputs and locks an example left."""
        for f in self.root.glob("out.img*"):
            f.unlink()
        for k in self.storage.list(LOCKS_PREFIX):
            self.storage.delete(k.key)


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Fixture:
    return Fixture(tmp_path_factory.mktemp("repo"))


def refused_or_done(call) -> object:
    try:
        return call()
    except DrctlError as e:
        assert e.exit_code in (1, 10, 11, 12, 13, 14, 15) and e.message
        return e


# ---- manifests ------------------------------------------------------------------------------


@CORPUS
@given(st.data())
def test_mutated_manifests_are_refused_as_corrupt_or_restore_verified(fx: Fixture, data) -> None:
    doc = data.draw(mutated_document(fx.manifest_doc))
    try:
        blob = seal_manifest(fx.repo.keys, fx.repo.repo_id, fx.point.id, doc)
    except (TypeError, ValueError):
        return  # not JSON-encodable: no manifest can hold it
    fx.storage.put(fx.manifest_key, blob)
    try:
        got = refused_or_done(lambda: fx.repo.load_point(fx.point.id))
        if isinstance(got, DrctlError):
            assert got.exit_code == 13
        elif got.size <= 64 * MiB:  # a manifest may claim any size; restoring it is not the point
            fx.clean()
            refused_or_done(
                lambda: restore_disk(fx.repo, server=got.server, disk=got.disk, out=fx.root / "out.img")
            )
    finally:
        fx.storage.put(fx.manifest_key, fx.manifest_blob)
        fx.clean()


@CORPUS
@given(st.data())
def test_garbage_manifest_objects_are_integrity_failures(fx: Fixture, data) -> None:
    real = fx.manifest_blob
    blob = data.draw(
        st.one_of(
            st.integers(0, len(real) - 1).map(lambda k: real[:k]),  # truncated
            st.binary(max_size=200),  # not a manifest at all
            st.tuples(st.integers(0, len(real) - 1), st.binary(min_size=1, max_size=8)).map(
                lambda t: real[: t[0]] + t[1] + real[t[0] + len(t[1]) :]  # overwritten in place
            ),
        )
    )
    if blob == real:
        return  # bytes overwritten by themselves
    fx.storage.put(fx.manifest_key, blob)
    try:
        got = refused_or_done(lambda: fx.repo.load_point(fx.point.id))
        assert isinstance(got, DrctlError) and got.exit_code == 13, got
    finally:
        fx.storage.put(fx.manifest_key, fx.manifest_blob)


# ---- key slots and config ---------------------------------------------------------------------


def _affordable(doc: object) -> bool:
    """A slot whose scrypt parameters are valid but costly is left to the KDF-bounds test below."""
    kdf = doc.get("kdf") if isinstance(doc, dict) else None
    if not isinstance(kdf, dict):
        return True
    n, r, p = (kdf.get(k) for k in "nrp")
    if not all(isinstance(v, int) for v in (n, r, p)):
        return True
    return not (n > 2**12 or r * p > 16 or r > 64 or p > 16) or n <= 0 or r <= 0 or p <= 0


@CORPUS
@given(st.data())
def test_mutated_key_slots_open_or_are_refused(fx: Fixture, data) -> None:
    doc = data.draw(mutated_document(json.loads(fx.slot_blob)).filter(_affordable))
    try:
        fx.storage.put(fx.slot_key, json.dumps(doc).encode())
    except (TypeError, ValueError):
        return
    try:
        refused_or_done(lambda: open_repository(fx.storage, PASSWORD))
        refused_or_done(fx.repo.list_keys)
    finally:
        fx.storage.put(fx.slot_key, fx.slot_blob)


@CORPUS
@given(st.data())
def test_mutated_configs_are_refused_before_anything_is_read(fx: Fixture, data) -> None:
    doc = data.draw(mutated_document(json.loads(fx.config_blob)))
    try:
        fx.storage.put(CONFIG_KEY, json.dumps(doc).encode())
    except (TypeError, ValueError):
        return
    try:
        refused_or_done(lambda: open_repository(fx.storage, PASSWORD))
    finally:
        fx.storage.put(CONFIG_KEY, fx.config_blob)


def test_absurd_kdf_parameters_are_refused_before_running_the_kdf(fx: Fixture) -> None:
    doc = json.loads(fx.slot_blob)
    doc["kdf"].update(n=2**22, r=16, p=4)
    fx.storage.put(fx.slot_key, json.dumps(doc).encode())
    try:
        with pytest.raises(DrctlError):
            open_repository(fx.storage, PASSWORD)
    finally:
        fx.storage.put(fx.slot_key, fx.slot_blob)


# ---- locks ----------------------------------------------------------------------------------

AWARE_TIMES = st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat())


@st.composite
def mutated_lock(draw: st.DrawFn, base: dict) -> object:
    """Each field of a real lock kept, or replaced by any value or by another (aware) time."""
    doc = {k: draw(st.one_of(st.just(v), VALUES, AWARE_TIMES)) for k, v in base.items()}
    return draw(st.one_of(st.just(doc), mutated_document(doc)))


@CORPUS
@given(st.data())
def test_mutated_locks_block_or_are_stale_and_unlock_removes_them(fx: Fixture, data) -> None:
    doc = data.draw(mutated_lock(fx.lock_doc))
    try:
        fx.storage.put(LOCKS_PREFIX + "ab" * 16, json.dumps(doc).encode())
    except (TypeError, ValueError):
        return
    try:
        assert len(read_locks(fx.storage)) == 1
        try:
            with fx.repo.lock(exclusive=True, operation="prune"):
                pass
        except RepoLocked as e:
            assert e.exit_code == 11 and "drctl unlock" in e.message
        remove_locks(fx.storage, all_locks=True)
        assert read_locks(fx.storage) == []
    finally:
        fx.clean()


@pytest.mark.parametrize(
    "body",
    [
        b'{"exclusive": true, "operation": "prune", "hostname": "h", "pid": 1, "refreshed": "2020-01-01T00:00:00"}',
        b"\x00\xffnot json",
        b"[" * 100_000,
    ],
    ids=["naive-time", "not-json", "deep-json"],
)
def test_an_odd_lock_is_reported_and_removed_by_unlock(fx: Fixture, body: bytes) -> None:
    fx.storage.put(LOCKS_PREFIX + "cd" * 16, body)
    try:
        with pytest.raises(RepoLocked), fx.repo.lock(exclusive=True, operation="prune"):
            pass
        assert [lk.key for lk in remove_locks(fx.storage)] == [LOCKS_PREFIX + "cd" * 16]
    finally:
        fx.clean()


# ---- the same objects, through the CLI --------------------------------------------------------


def test_damaged_objects_through_the_cli_are_clean_failures(fx: Fixture) -> None:
    repo = str(fx.root / "repo")
    env = {"DRCTL_PASSWORD": PASSWORD.decode()}
    cases: list[tuple[str, bytes, tuple[str, ...], set[int]]] = [
        (fx.manifest_key, fx.manifest_blob[:-7], ("snapshots", repo), {13}),
        (fx.manifest_key, b"", ("restore", repo, "--server", "web", "--out", str(fx.root / "o.img")), {13}),
        (LOCKS_PREFIX + "ef" * 16, b'{"exclusive": 5}', ("snapshots", repo), {11}),
        (LOCKS_PREFIX + "ef" * 16, b'{"exclusive": 5}', ("unlock", repo, "--all"), {0}),
        (fx.slot_key, b'{"version": 1, "kdf": {"name": "argon9"}}', ("snapshots", repo), {12, 13}),
        (CONFIG_KEY, b"{}", ("snapshots", repo), {13}),
    ]
    for key, blob, argv, expected in cases:
        original = fx.storage.get(key) if not key.startswith(LOCKS_PREFIX) else None
        fx.storage.put(key, blob)
        try:
            [(r, took)] = drctl_many([argv], env=env)
            assert_clean_failure(r)
            assert r.returncode in expected, f"{argv}: {r.returncode} {r.stderr}"
            assert took < 10
        finally:
            if original is not None:
                fx.storage.put(key, original)
            fx.clean()
    assert not os.path.exists(fx.root / "o.img")
