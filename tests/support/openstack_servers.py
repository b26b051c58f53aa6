"""Real OpenStack API servers for the tests: Debian's neutron-server (ML2 + VPNaaS) and glance-api
(file store), on 127.0.0.1 without Keystone, each in a temporary state directory (SQLite).

``auth_strategy = noauth`` gives every request an admin context: quotas are enforced, policy is
not, and a list call sees every project, so tests work in a project of their own
(:meth:`OpenStackServers.new_project`) and pass ``project_id`` explicitly. There are no agents:
ports stay DOWN and VPN objects stay PENDING_CREATE; the API objects themselves are complete.

Ports: ``DRCTL_TEST_NEUTRON_PORT`` (default 19696), ``DRCTL_TEST_NEUTRON_NOVPN_PORT`` (default the
next one: a second neutron-server, on a copy of the schema, without VPNaaS) and ``DRCTL_TEST_GLANCE_PORT``
(default 19292), one set per worktree. The packages are installed by ``.ci/install-system-deps``; the scripts that
import neutron or glance run on Debian's own ``/usr/bin/python3``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

NEUTRON_PORT = int(os.environ.get("DRCTL_TEST_NEUTRON_PORT", "19696"))
GLANCE_PORT = int(os.environ.get("DRCTL_TEST_GLANCE_PORT", "19292"))
# A second neutron-server, without the VPNaaS plugin: a cloud with no VPN service.
NEUTRON_NOVPN_PORT = int(os.environ.get("DRCTL_TEST_NEUTRON_NOVPN_PORT", str(NEUTRON_PORT + 1)))
SYSTEM_PYTHON = "/usr/bin/python3"
START_TIMEOUT_S = 60.0

NEUTRON_CONF = """\
[DEFAULT]
auth_strategy = noauth
core_plugin = ml2
service_plugins = {plugins}
bind_host = 127.0.0.1
bind_port = {port}
api_workers = 0
rpc_workers = 0
rpc_state_report_workers = 0
# in-process messaging: no RabbitMQ; casts to the (absent) agents are dropped
transport_url = fake:/
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
state_path = {state}
[database]
connection = sqlite:///{state}/{db}
[oslo_concurrency]
lock_path = {state}/lock
[oslo_messaging_notifications]
driver = noop
[service_providers]
service_provider = VPN:strongswan:neutron_vpnaas.services.vpn.service_drivers.ipsec.IPsecVPNDriver:default
"""

ML2_CONF = """\
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:200
[ml2_type_vxlan]
vni_ranges = 1:1000
[securitygroup]
enable_security_group = true
firewall_driver = noop
"""

# `neutron-db-manage upgrade heads` cannot ALTER constraints on SQLite: build the schema from the
# models (neutron + vpnaas), stamp it, and use WAL (without it a VPN service create deadlocks on
# two sessions of one request and answers 500 "database is locked").
NEUTRON_SCHEMA = """\
import sqlite3, sys
import sqlalchemy as sa
from neutron_vpnaas.db.models import head
head.get_metadata().create_all(sa.create_engine("sqlite:///" + sys.argv[1]))
sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")
"""

GLANCE_CONF = """\
[DEFAULT]
bind_host = 127.0.0.1
bind_port = {port}
workers = 0
enabled_backends = local:file
[paste_deploy]
# empty flavor: the pipeline with an unauthenticated (admin) context, no Keystone
flavor =
config_file = /etc/glance/glance-api-paste.ini
[database]
connection = sqlite:///{state}/glance.sqlite
[glance_store]
default_backend = local
[local]
filesystem_store_datadir = {state}/images
[os_glance_staging_store]
filesystem_store_datadir = {state}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {state}/staging
[oslo_concurrency]
lock_path = {state}/lock
[oslo_messaging_notifications]
driver = noop
[oslo_policy]
enforce_new_defaults = false
"""

NEEDED = {
    "neutron-server": "neutron-server python3-neutron-vpnaas",
    "neutron-db-manage": "neutron-server",
    "glance-api": "glance-api",
    "glance-manage": "glance-api",
}


def _fail(message: str) -> None:
    """A missing or broken server fails the tests (unless DRCTL_ALLOW_SKIP=1, like the stores)."""
    if os.environ.get("DRCTL_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def _check_installed() -> None:
    missing = sorted({pkg for exe, pkg in NEEDED.items() if shutil.which(exe) is None})
    if missing or not Path(SYSTEM_PYTHON).exists():
        _fail(
            f"OpenStack servers for the tests are not installed (missing: {' '.join(missing) or 'python3'}); "
            "run `bash .ci/install-system-deps` as root"
        )


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _setup(cmd: list[str], log: Path, what: str) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120
        )
    if done.returncode != 0:
        _fail(f"{what} failed (exit {done.returncode}); see {log}")


class _Server:
    """One API server process (its own session: its forked workers are stopped with it)."""

    def __init__(self, name: str, cmd: list[str], log: Path, probe: str) -> None:
        self.name, self.log, self.probe = name, log, probe
        with open(log.with_suffix(".stdout"), "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _fail(f"{self.name} exited with {self.proc.returncode} while starting; see {self.log}")
            try:
                with urllib.request.urlopen(self.probe, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        _fail(f"{self.name} did not answer {self.probe} within {START_TIMEOUT_S:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass


@dataclass(frozen=True)
class OpenStackServers:
    """The running Neutron and Glance."""

    network_url: str
    image_url: str
    state_dir: Path
    network_without_vpnaas_url: str

    def cloud_config(self, *, without_vpnaas: bool = False, **extra: str) -> dict[str, Any]:
        """A clouds.yaml entry for these servers (no Keystone), plus ``extra`` keys (e.g. a
        ``compute_endpoint_override``, ``drctl_project_id``)."""
        return {
            "auth_type": "none",
            "network_endpoint_override": self.network_without_vpnaas_url
            if without_vpnaas
            else self.network_url,
            "image_endpoint_override": self.image_url,
            **extra,
        }

    def write_clouds_yaml(
        self, where: Path, name: str = "drtest", *, without_vpnaas: bool = False, **extra: str
    ) -> Path:
        path = where / "clouds.yaml"
        path.write_text(
            yaml.safe_dump({"clouds": {name: self.cloud_config(without_vpnaas=without_vpnaas, **extra)}})
        )
        return path

    def connect(self, *, without_vpnaas: bool = False, **extra: str) -> Any:
        """An openstacksdk Connection to these servers, ignoring the environment."""
        import openstack

        return openstack.connect(
            load_yaml_config=False,
            load_envvars=False,
            **self.cloud_config(without_vpnaas=without_vpnaas, **extra),
        )

    @staticmethod
    def new_project() -> str:
        """A fresh project id: its own quotas and resources (noauth accepts any id)."""
        return uuid.uuid4().hex


def start_openstack(state: Path) -> Iterator[OpenStackServers]:
    """Set up and start both servers in ``state``; stop them when the generator is closed."""
    _check_installed()
    for name, port in (
        ("Neutron", NEUTRON_PORT),
        ("Neutron_novpn", NEUTRON_NOVPN_PORT),
        ("Glance", GLANCE_PORT),
    ):
        if not _port_free(port):
            _fail(
                f"port {port} for the test {name} is taken (another test session of this worktree?); "
                f"stop it, or set DRCTL_TEST_{name.upper()}_PORT to a free port"
            )
    n, g = state / "neutron", state / "glance"
    for d in (n / "lock", g / "images", g / "staging", g / "lock"):
        d.mkdir(parents=True, exist_ok=True)
    (n / "neutron.conf").write_text(
        NEUTRON_CONF.format(port=NEUTRON_PORT, state=n, db="neutron.sqlite", plugins="router,vpnaas")
    )
    (n / "neutron-novpn.conf").write_text(
        NEUTRON_CONF.format(port=NEUTRON_NOVPN_PORT, state=n, db="neutron-novpn.sqlite", plugins="router")
    )
    (n / "ml2_conf.ini").write_text(ML2_CONF)
    (n / "schema.py").write_text(NEUTRON_SCHEMA)
    (g / "glance-api.conf").write_text(GLANCE_CONF.format(port=GLANCE_PORT, state=g))
    nconf = ["--config-file", str(n / "neutron.conf"), "--config-file", str(n / "ml2_conf.ini")]
    gconf = ["--config-file", str(g / "glance-api.conf")]

    # Glance's migrations and Neutron's schema are independent: run them side by side.
    glance_db = subprocess.Popen(
        ["glance-manage", *gconf, "db_sync"],
        stdout=open(g / "setup.log", "ab"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    _setup(
        [SYSTEM_PYTHON, str(n / "schema.py"), str(n / "neutron.sqlite")], n / "setup.log", "Neutron schema"
    )
    _setup(["neutron-db-manage", *nconf, "stamp", "heads"], n / "setup.log", "neutron-db-manage stamp")
    # Its own copy of the schema: two servers writing one SQLite file at start-up lock each other out.
    shutil.copy(n / "neutron.sqlite", n / "neutron-novpn.sqlite")
    if glance_db.wait(timeout=120) != 0:
        _fail(f"glance-manage db_sync failed; see {g / 'setup.log'}")

    servers = [
        _Server(
            "neutron-server",
            ["neutron-server", *nconf, "--log-file", str(n / "neutron-server.log")],
            n / "neutron-server.log",
            f"http://127.0.0.1:{NEUTRON_PORT}/v2.0/networks",
        ),
        _Server(
            "neutron-server (no VPNaaS)",
            [
                "neutron-server",
                "--config-file",
                str(n / "neutron-novpn.conf"),
                "--config-file",
                str(n / "ml2_conf.ini"),
                "--log-file",
                str(n / "neutron-novpn.log"),
            ],
            n / "neutron-novpn.log",
            f"http://127.0.0.1:{NEUTRON_NOVPN_PORT}/v2.0/networks",
        ),
        _Server(
            "glance-api",
            ["glance-api", *gconf, "--log-file", str(g / "glance-api.log")],
            g / "glance-api.log",
            f"http://127.0.0.1:{GLANCE_PORT}/v2/images",
        ),
    ]
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        for server in servers:
            server.wait_ready(deadline)
        yield OpenStackServers(
            network_url=f"http://127.0.0.1:{NEUTRON_PORT}/",
            image_url=f"http://127.0.0.1:{GLANCE_PORT}/",
            state_dir=state,
            network_without_vpnaas_url=f"http://127.0.0.1:{NEUTRON_NOVPN_PORT}/",
        )
    finally:
        for server in servers:
            server.stop()
