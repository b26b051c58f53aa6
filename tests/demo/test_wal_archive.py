"""The demo database copy's configuration (drctl.demo.wal_archive): archiving and restoring through
drctl with no secret in it; the real run is proven by tests/demo/test_prepare.py and the demo drill."""

from __future__ import annotations

import shlex
from pathlib import Path

from drctl.demo.images.roles import DB_MAX_CONNECTIONS
from drctl.demo.wal_archive import server_conf


def _settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" = ")
        out[key] = value
    return out


def test_the_copy_archives_and_restores_through_drctl_without_a_secret():
    root = Path("/var/tmp/drctl-demo-wal-db01-x")
    conf = _settings(server_conf(root, root / "drctl", "s3://demo-backups/repo", "db01"))
    assert conf["archive_mode"] == "on" and conf["recovery_target_action"] == "'promote'"
    push = shlex.split(conf["archive_command"].strip("'").replace("''", "'"))
    fetch = shlex.split(conf["restore_command"].strip("'").replace("''", "'"))
    common = ["--repo", "s3://demo-backups/repo", "--server", "db01", "--password-file", f"{root}/password"]
    assert push[:3] == [f"{root}/drctl", "wal", "push"] and push[-2:] == ["%p", "%f"]
    assert fetch[:4] == [f"{root}/drctl", "wal", "fetch", "--recovery"] and fetch[-2:] == ["%f", "%p"]
    for argv in (push, fetch):
        assert argv[argv.index("--repo") : argv.index("--password-file") + 2] == common
        assert argv[argv.index("--key-cache") + 1] == f"{root}/wal.key"
    # Reachable only through its own socket directory, with the guest's connection limit (the WAL
    # records it, and the guest replays it).
    assert conf["listen_addresses"] == "''" and conf["unix_socket_directories"] == f"'{root}'"
    assert conf["max_connections"] == str(DB_MAX_CONNECTIONS)


def test_a_quote_in_the_repository_url_cannot_end_the_setting():
    root = Path("/var/tmp/x")
    conf = _settings(server_conf(root, root / "drctl", "s3://b/it's", "db01"))
    value = conf["archive_command"]
    assert value.startswith("'") and value.endswith("'") and "''" in value
    assert "s3://b/it's" in shlex.split(value[1:-1].replace("''", "'"))
