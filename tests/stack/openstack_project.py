"""A client project in the test Neutron: a copy of the Pulumi project whose stacks name a fresh
external network, that network, and a clouds.yaml pointing drctl at Neutron, Glance and the
Nova/Cinder stand-in. Not a test module: imported by the preflight and activation tests."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.nova_cinder import NovaCinderStub
from tests.support.openstack_servers import OpenStackServers

ROOT = Path(__file__).resolve().parents[2]
CLOUD = "drtest"


def copy_project(where: Path, external_network: str) -> Path:
    """The checkout's Pulumi project (plans, stacks, their demo passphrases) with every stack's
    ``external_network`` renamed: noauth Neutron shows every project's networks, so each test
    names its own."""
    proj = where / "project"
    (proj / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", proj)
    shutil.copytree(ROOT / "recovery_plans", proj / "recovery_plans")
    for f in (ROOT / "stacks").iterdir():
        if f.suffix == ".passphrase" or f.name == "__main__.py":
            shutil.copy(f, proj / "stacks")
        elif f.name.startswith("Pulumi.") and f.suffix == ".yaml":
            text = f.read_text()
            old = "flexible-recovery:external_network: public"
            assert old in text, f"{f.name} no longer names its external network as expected"
            (proj / "stacks" / f.name).write_text(
                text.replace(old, f"flexible-recovery:external_network: {external_network}")
            )
    return proj


@dataclass
class ClientProject:
    project_id: str
    external_network: str
    project_dir: Path
    clouds_yaml: Path
    conn: Any  # openstacksdk Connection to the real Neutron and Glance

    def env(self) -> dict[str, str]:
        """What drctl reads: clouds.yaml and the cloud to use."""
        return {"OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml), "OS_CLOUD": CLOUD}


def client_project(
    servers: OpenStackServers,
    stub: NovaCinderStub,
    where: Path,
    *,
    external: bool = True,
    without_vpnaas: bool = False,
) -> ClientProject:
    project = servers.new_project()
    ext_name = f"public-{uuid.uuid4().hex[:8]}"
    conn = servers.connect()
    if external:
        # A tenant-type (vxlan) network: a flat one would take the only `public` physical network.
        ext = conn.network.create_network(name=ext_name, is_router_external=True)
        conn.network.create_subnet(
            network_id=ext.id, ip_version=4, cidr="203.0.113.0/24", is_dhcp_enabled=False
        )
    clouds = servers.write_clouds_yaml(
        where,
        CLOUD,
        without_vpnaas=without_vpnaas,
        compute_endpoint_override=stub.compute_url,
        block_storage_endpoint_override=stub.volume_url,
        drctl_project_id=project,
    )
    return ClientProject(project, ext_name, copy_project(where, ext_name), clouds, conn)
