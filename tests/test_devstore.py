"""`drctl local up|down|status`: the embedded SeaweedFS, started for real on its own ports."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys

import pytest

from drctl.cli import main
from drctl.devstore import LocalStore, LocalStoreError, LocalStorePorts
from tests.support.events import result_of

pytestmark = pytest.mark.integration

# Away from the defaults (8333...) and from the test fixture's ports, inside the block of 100 that
# DRCTL_TEST_SEAWEED_PORT_BASE gives each concurrent test session (18533 by default).
PORT_BASE = int(os.environ.get("DRCTL_TEST_SEAWEED_PORT_BASE", "18533")) + 50


def _listeners(pid: int) -> list[str]:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_status_down_round_trip(tmp_path, capsys):
    state = tmp_path / "local"
    args = ["--state-dir", str(state)]
    try:
        assert main(["local", "up", "--port-base", str(PORT_BASE), "--json", *args]) == 0
        info = result_of(capsys.readouterr().out)
        assert info["running"] and info["endpoint"] == f"http://127.0.0.1:{PORT_BASE}"
        assert info["buckets"] == ["demo-backups", "demo-reports"]
        secret = (state / "secret_access_key").read_text().strip()
        assert secret and secret not in json.dumps(info)  # JSON names the file, not the secret

        # Every listening socket of the server is on loopback, none on 0.0.0.0 / [::].
        listeners = _listeners(info["pid"])
        assert len(listeners) >= 5
        assert all(addr.startswith("127.0.0.1:") for addr in listeners), listeners

        # Key material is private to the owner.
        for name in ("s3.json", "env", "credentials.json", "secret_access_key"):
            assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600, name

        # The env file works as printed: a fresh shell sources it and drctl's storage reaches the
        # lock-enabled demo bucket, where retention is really enforced.
        probe = (
            "from drctl.storage import open_storage\n"
            "s = open_storage('s3://demo-backups/probe-test')\n"
            "s.put('hello', b'world'); print(s.get('hello').decode(), s.lock_support().enforced)\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        out = subprocess.run(
            ["bash", "-c", f'source "{state}/env" && "{sys.executable}" -c "$PROBE"'],
            env={**env, "PROBE": probe},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["world", "True"]

        # The shell exports printed by `status` carry the secret only by reference.
        assert main(["local", "status", *args]) == 0
        text = capsys.readouterr().out
        assert secret not in text
        assert f'AWS_SECRET_ACCESS_KEY="$(cat {state}/secret_access_key)"' in text
        assert re.search(rf"^export AWS_ENDPOINT_URL=http://127.0.0.1:{PORT_BASE}$", text, re.M)

        # `up` again is a no-op on the running server.
        assert main(["local", "up", "--json", *args]) == 0
        assert result_of(capsys.readouterr().out)["pid"] == info["pid"]

        # A second store on the same ports is refused, naming the ports.
        with pytest.raises(LocalStoreError, match=str(PORT_BASE)):
            LocalStore(tmp_path / "other", ports=LocalStorePorts.from_base(PORT_BASE)).up()
    finally:
        assert main(["local", "down", *args]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not _port_open(PORT_BASE)
    assert main(["local", "status", *args]) == 14
    assert main(["local", "down", *args]) == 0
    assert "was not running" in capsys.readouterr().out


def test_data_survives_a_restart(tmp_path):
    store = LocalStore(tmp_path / "local", ports=LocalStorePorts.from_base(PORT_BASE + 10))
    try:
        store.up(buckets=(("keep", False),))
        creds = json.loads((tmp_path / "local" / "credentials.json").read_text())
        from drctl.storage.s3 import S3Storage
        from drctl.storage.s3_client import make_client

        def open_keep() -> S3Storage:
            return S3Storage(
                "keep",
                "",
                make_client(
                    endpoint_url=store.endpoint,
                    access_key_id=creds["access_key_id"],
                    secret_access_key=creds["secret_access_key"],
                ),
            )

        open_keep().put("config", b"persisted")
        assert store.down() is True
        store.up(buckets=())
        assert open_keep().get("config") == b"persisted"
    finally:
        store.down()


def test_a_store_holding_many_clients_buckets_keeps_accepting_writes(seaweed_server):
    """Each bucket takes a volume of its own: 120 vaults (more than SeaweedFS's automatic volume
    limit of one per free GiB on a small disk) all take a locked object."""
    from concurrent.futures import ThreadPoolExecutor

    from drctl.storage.s3_client import create_bucket

    client = seaweed_server.client()
    names = [f"t-many-{os.getpid()}-{i}" for i in range(120)]

    def one(name: str) -> bytes:
        create_bucket(client, name, object_lock=True)
        client.put_object(Bucket=name, Key="config", Body=b"x")
        return client.get_object(Bucket=name, Key="config")["Body"].read()

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, names)) == [b"x"] * len(names)
