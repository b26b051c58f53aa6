"""A client of any size for the preview benchmark: N servers over S sites, one role each, and the
client's networks (16 by default), like the held-out plan the recovery space is sized against.

``write_project(directory, servers=200, sites=4, networks=16)`` lays out a Pulumi project drctl can
preview offline: this checkout's ``Pulumi.yaml`` and program, ``recovery_plans/<stack>.yaml``, and
``stacks/Pulumi.<stack>.yaml`` with a flavor map and one VPN pre-shared key per site, encrypted with
a passphrase of its own in ``stacks/<stack>.passphrase`` (a throw-away project: nothing of a real
client). ``python -m benchmarks.plan_generator DIR [--servers N ...]`` does the same from a shell.

Each site has ``networks / sites`` subnets: one for its workstations (DHCP, served by the NCA) and
the rest for servers, filled round robin. Roles rotate through :data:`ROLES`; each server has one
check on its role's port, so every server is ``dr`` and verifiable. The first server of each role
boots in group 1; every other server depends on it (group 2), as applications wait for their
directory or database.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from drctl.paths import PROJECT
from drctl.stack.config import set_secret

REPO_ROOT = Path(__file__).resolve().parents[1]
# role -> (os family, the port its check connects to)
ROLES: dict[str, tuple[str, int]] = {
    "ssh": ("linux", 22),
    "rdp": ("windows", 3389),
    "sql": ("linux", 5432),
    "web": ("linux", 443),
    "dns": ("linux", 53),
    "smb": ("windows", 445),
}
FLAVORS = [
    {"name": "gp1.small", "vcpus": 1, "ram_mb": 2048},
    {"name": "gp1.medium", "vcpus": 2, "ram_mb": 4096},
]


def generate_plan(servers: int = 200, sites: int = 4, networks: int = 16, client: str = "bench") -> dict:
    """The plan document (what ``recovery_plans/<client>.yaml`` holds)."""
    per_site = networks // sites
    if sites < 1 or per_site < 2 or networks % sites:
        raise ValueError(
            f"{networks} networks over {sites} sites: each site needs the same number of subnets, "
            "at least 2 (workstations and servers)"
        )
    if servers > sites * (per_site - 1) * 250:
        raise ValueError(f"{servers} servers do not fit in {sites * (per_site - 1)} server /24 subnets")
    site_docs: list[dict[str, Any]] = []
    server_subnets: list[tuple[str, str]] = []  # (ref, /24 prefix "10.s.n")
    for s in range(sites):
        name = f"site{s + 1:02d}"
        subnets: list[dict[str, Any]] = [
            {
                "name": "users",
                "cidr": f"10.{s + 1}.0.0/24",
                "gateway": f"10.{s + 1}.0.1",
                "dhcp": {"start": f"10.{s + 1}.0.100", "end": f"10.{s + 1}.0.250"},
            }
        ]
        for n in range(1, per_site):
            subnets.append(
                {"name": f"servers{n}", "cidr": f"10.{s + 1}.{n}.0/24", "gateway": f"10.{s + 1}.{n}.1"}
            )
            server_subnets.append((f"{name}/servers{n}", f"10.{s + 1}.{n}"))
        site_docs.append(
            {
                "name": name,
                "peer_address": f"198.51.100.{s + 10}",
                "dns_domain": f"{client}.example",
                "subnets": subnets,
            }
        )
    roles = list(ROLES)
    first_of_role: dict[str, str] = {}
    server_docs = []
    for i in range(servers):
        role = roles[i % len(roles)]
        os_family, port = ROLES[role]
        name = f"srv{i + 1:04d}"
        ref, prefix = server_subnets[i % len(server_subnets)]
        host = 10 + i // len(server_subnets)
        leader = first_of_role.setdefault(role, name)
        server_docs.append(
            {
                "name": name,
                "os": {"family": os_family, "version": "2022" if os_family == "windows" else "12"},
                "class": "dr",
                "roles": [role],
                "flavor": {"vcpus": 1 + i % 2, "ram_mb": 2048 * (1 + i % 2)},
                "disks": [{"name": "system", "size_gb": 40, "boot": True}],
                "nics": [{"subnet": ref, "ip": f"{prefix}.{host}"}],
                "boot": {
                    "group": 1 if leader == name else 2,
                    "depends_on": [] if leader == name else [leader],
                },
                "backup": {
                    "schedule": [{"type": "full", "every": "7d"}, {"type": "incremental", "every": "1d"}]
                },
                "rpo": "24h",
                "rto": "4h",
                "checks": [{"port": port}],
            }
        )
    return {
        "client": {"id": client, "name": f"{client.title()} (generated)", "timezone": "Europe/Paris"},
        "contacts": [
            {
                "name": "Alex Martin",
                "role": "DSI",
                "phone": "+33 1 00 00 00 00",
                "email": f"alex.martin@{client}.example",
                "can_activate": True,
            }
        ],
        "sites": site_docs,
        "servers": server_docs,
    }


def write_project(
    directory: Path, *, servers: int = 200, sites: int = 4, networks: int = 16, stack: str = "bench"
) -> Path:
    """A Pulumi project under ``directory`` with one stack ``stack`` of the generated plan."""
    plan = generate_plan(servers, sites, networks, client=stack)
    (directory / "stacks").mkdir(parents=True, exist_ok=True)
    (directory / "recovery_plans").mkdir(exist_ok=True)
    shutil.copy2(REPO_ROOT / "Pulumi.yaml", directory / "Pulumi.yaml")
    shutil.copy2(REPO_ROOT / "stacks" / "__main__.py", directory / "stacks" / "__main__.py")
    (directory / "recovery_plans" / f"{stack}.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    passphrase = directory / "stacks" / f"{stack}.passphrase"
    passphrase.touch(mode=0o600)
    passphrase.write_text(secrets.token_urlsafe(24) + "\n")
    config = {
        f"{PROJECT}:plan": f"recovery_plans/{stack}.yaml",
        f"{PROJECT}:flavor_map": FLAVORS,
        f"{PROJECT}:failover": "false",
    }
    (directory / "stacks" / f"Pulumi.{stack}.yaml").write_text(
        yaml.safe_dump({"config": config}, sort_keys=False)
    )
    for site in plan["sites"]:
        set_secret(stack, f"vpn_psks.{site['name']}", secrets.token_urlsafe(33), directory)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="where to write the project (created)")
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument(
        "--networks", type=int, default=16, help="client subnets, split evenly over the sites"
    )
    parser.add_argument("--stack", default="bench")
    args = parser.parse_args(argv)
    try:
        write_project(
            args.directory, servers=args.servers, sites=args.sites, networks=args.networks, stack=args.stack
        )
    except ValueError as e:
        parser.error(str(e))
    print(args.directory / "stacks" / f"Pulumi.{args.stack}.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
