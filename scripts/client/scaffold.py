"""``drctl client new``: a new client's commented plan skeleton and its stack file.

The plan (``recovery_plans/<id>.yaml``) holds what is known (client, sites and their peer
addresses) and a ``TODO`` marker wherever a person must decide (:mod:`drctl.plan.todos`):
``drctl validate`` refuses it until every marker is filled. The stack file
(``stacks/Pulumi.<id>.yaml``) gets a fresh ``encryptionsalt`` of Pulumi's passphrase secrets
provider (:mod:`drctl.stack.secrets`) for the passphrase in ``PULUMI_CONFIG_PASSPHRASE(_FILE)``
(never written anywhere), a random pre-shared key per site stored as a secret, the default
flavor map and the illustrative price table.

Both files are written under temporary names and linked into place only if neither exists yet,
so an existing client is never overwritten and an error leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from drctl.errors import InvalidInput, LocalIOError
from drctl.paths import PROJECT
from drctl.plan.todos import MARKER
from drctl.stack.config import STACKS_DIR
from drctl.stack.cost import ILLUSTRATIVE_PRICES
from drctl.stack.secrets import new_encryption_salt

PLANS_DIR = "recovery_plans"
PSK_BYTES = 33  # 44 base64url characters: well above the policy's 20
CLIENT_ID = re.compile(r"[a-z][a-z0-9-]{1,30}")
SITE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
DEFAULT_FLAVORS = [
    {"name": "m1.tiny", "vcpus": 1, "ram_mb": 512},
    {"name": "m1.small", "vcpus": 1, "ram_mb": 2048},
    {"name": "m1.medium", "vcpus": 2, "ram_mb": 4096},
    {"name": "m1.large", "vcpus": 4, "ram_mb": 8192},
    {"name": "m1.xlarge", "vcpus": 8, "ram_mb": 16384},
]


class ClientExists(InvalidInput):
    """The client already has a plan or a stack file; drctl never overwrites them."""


class PassphraseMissing(InvalidInput):
    """No Pulumi passphrase in the environment for a new stack's secrets."""


@dataclass(frozen=True)
class SiteSpec:
    name: str
    peer_address: str


@dataclass(frozen=True)
class NewClient:
    id: str
    name: str
    sites: tuple[SiteSpec, ...]


def parse_site(text: str) -> SiteSpec:
    """``paris=203.0.113.10`` -> a site; ValueError with a message naming what is wrong."""
    name, sep, address = text.partition("=")
    if not sep or not SITE_NAME.fullmatch(name):
        raise ValueError(
            f"{text!r} is not NAME=PEER_ADDRESS with a lower-case site name (letters, digits, '-'), "
            "e.g. paris=203.0.113.10"
        )
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise ValueError(f"{text!r}: {address!r} is not the site's public IPv4 address") from None
    return SiteSpec(name, str(ip))


def check_client(client: NewClient) -> None:
    if not CLIENT_ID.fullmatch(client.id):
        raise InvalidInput(
            f"client id {client.id!r} is not valid: 2 to 31 lower-case letters, digits or '-', starting "
            "with a letter (it names the stack and the vault's buckets)"
        )
    if not client.name.strip() or "\n" in client.name:
        raise InvalidInput("--name: the client's name must be one non-empty line")
    names = [s.name for s in client.sites]
    if not names:
        raise InvalidInput("give at least one --site NAME=PEER_ADDRESS (the client's sites)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidInput(f"--site {dup[0]} given twice; each site once")


def _q(text: str) -> str:
    """A YAML scalar for a comment-laden hand-written file."""
    return (
        yaml.safe_dump(text, default_style='"', width=1000, allow_unicode=True)
        .strip()
        .removesuffix("...")
        .strip()
    )


def plan_skeleton(client: NewClient) -> str:
    """The commented plan: what is known, and a TODO wherever a person must decide."""
    t = MARKER
    sites = []
    for s in client.sites:
        sites.append(
            f"""  - name: {s.name}
    peer_address: {s.peer_address}      # the site's public address (its NCA's IPsec peer)
    dns_domain: "{t}: e.g. {s.name}.{client.id}.lan"  # the DNS domain the NCA serves on site
    subnets:
      # The server room: servers are restored in the recovery space with these addresses.
      - {{name: lan, cidr: "{t}: e.g. 192.168.10.0/24", gateway: "{t}: e.g. 192.168.10.1"}}
      # The workstations' LAN (stays on site; in a disaster the NCA serves its DHCP and DNS).
      # Remove it if the site has no workstations: then the site gets no VPN and no NCA.
      - name: users
        cidr: "{t}: e.g. 192.168.20.0/24"
        gateway: "{t}: e.g. 192.168.20.1"
        dhcp: {{start: "{t}: e.g. 192.168.20.100", end: "{t}: e.g. 192.168.20.199"}}"""
        )
    first = client.sites[0].name
    return f"""# Recovery plan of client "{client.id}" ({client.name}), drafted by `drctl client new`.
# Every value starting with {t} must be filled in: `drctl validate recovery_plans/{client.id}.yaml`
# refuses the plan, naming each one, until none is left. The contract is recovery_plans/schema.json;
# recovery_plans/demo.yaml is a complete example. For a site that is itself an OpenStack cloud,
# `drctl plan import --cloud NAME` drafts the servers from what the cloud shows.
client:
  id: {client.id}
  name: {_q(client.name)}
  timezone: Europe/Paris              # IANA time zone of the activation window
  activation_window: business-hours   # or 24x7

# Who may ask for an activation (at least one with can_activate: true) and who is told.
contacts:
  - name: "{t}: the client's DR contact"
    role: DSI
    phone: "{t}: e.g. +33 1 00 00 00 00"
    email: "{t}: e.g. dsi@{client.id}.example"
    can_activate: true

sites:
{chr(10).join(sites)}

# One entry per protected server; copy the block for each. Boot order: a server starts once every
# server of its depends_on is available.
servers:
  - name: "{t}: the server's name, e.g. db01"
    description: "{t}: what it does"
    os: {{family: linux, version: debian-12}}   # family: linux | windows | other
    class: "{t}: dr | backup-tested | backup-only"
    roles: [ssh]                              # ad dns dhcp sql web smb nfs rdp ssh winrm mail app
    flavor: {{vcpus: 1, ram_mb: 2048}}
    disks: [{{name: system, size_gb: 20, boot: true}}]
    nics: [{{subnet: {first}/lan, ip: "{t}: its address in {first}/lan"}}]
    boot: {{group: 1, depends_on: "{t}: the servers it needs first, e.g. [dns01], or []"}}
    backup: {{schedule: [{{type: full, every: 7d}}, {{type: incremental, every: 1d}}]}}
    rpo: "{t}: the data loss the client accepts, e.g. 24h"
    rto: "{t}: the time to recover the client accepts, e.g. 4h"
    checks: "{t}: how to tell it works, e.g. [{{port: 443}}, {{service: nginx}}] (required for dr)"
"""


def stack_document(client: NewClient, passphrase: str) -> str:
    """The stack file: comment header, a fresh encryption salt and every setting a stack needs."""
    crypter = new_encryption_salt(passphrase)
    psks = {s.name: {"secure": crypter.encrypt(secrets.token_urlsafe(PSK_BYTES))} for s in client.sites}
    config = {
        f"{PROJECT}:plan": f"{PLANS_DIR}/{client.id}.yaml",
        f"{PROJECT}:region": "RegionOne",
        f"{PROJECT}:external_network": "public",
        f"{PROJECT}:vault": "swift",
        f"{PROJECT}:flavor_map": DEFAULT_FLAVORS,
        f"{PROJECT}:failover": "false",
        f"{PROJECT}:activation": {"servers": [], "images": {}, "restore_point": ""},
        f"{PROJECT}:prices": ILLUSTRATIVE_PRICES,
        f"{PROJECT}:vpn_psks": psks,
    }
    header = f"""# Stack of client "{client.id}" ({client.name}), written by `drctl client new`.
# - region, external_network, flavor_map: set them to the recovery cloud's (`openstack flavor list`).
# - vault: swift (Swift containers) or s3 (S3 buckets with Object Lock, for S3-only clouds).
# - prices: ILLUSTRATIVE, not a quote; put the recovery cloud's price list in for `drctl cost`.
# - vpn_psks: one random pre-shared key per site, a Pulumi passphrase secret; the passphrase is the
#   one in PULUMI_CONFIG_PASSPHRASE(_FILE) when the stack was created, kept outside the repository.
"""
    body = yaml.safe_dump(
        {"encryptionsalt": crypter.encryption_salt, "config": config},
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )
    return header + body


def new_passphrase() -> str:
    """The passphrase of a new stack: ``PULUMI_CONFIG_PASSPHRASE``, else the file named by
    ``PULUMI_CONFIG_PASSPHRASE_FILE``; never a file of the repository."""
    from drctl.input_files import InputFileError, read_input_text

    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        value = os.environ["PULUMI_CONFIG_PASSPHRASE"]
    elif os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        path = os.environ["PULUMI_CONFIG_PASSPHRASE_FILE"]
        try:
            value = read_input_text(path, what="passphrase file", max_bytes=64 * 1024).strip()
        except InputFileError as e:
            raise PassphraseMissing(f"PULUMI_CONFIG_PASSPHRASE_FILE: {e.message}") from e
    else:
        raise PassphraseMissing(
            "no passphrase for the new stack's secrets: set PULUMI_CONFIG_PASSPHRASE_FILE to a file "
            "outside the repository (or PULUMI_CONFIG_PASSPHRASE), and keep it with the client's secrets"
        )
    if len(value) < 12:
        raise PassphraseMissing(
            "the Pulumi passphrase is shorter than 12 characters; choose a longer one "
            "(it protects the client's VPN keys)"
        )
    return value


def _publish_new(files: dict[Path, str]) -> None:
    """Create every file or none: each is written under a temporary name, then hard-linked to its
    name (which fails if the name exists); on any failure the names already linked are removed."""
    temps: dict[Path, Path] = {}
    linked: list[Path] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            with open(tmp, "x", encoding="utf-8") as f:
                temps[path] = tmp
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in temps.items():
            try:
                os.link(tmp, path)
            except FileExistsError as e:
                raise ClientExists(f"{path} appeared while writing; nothing was written") from e
            linked.append(path)
    except ClientExists:
        for path in linked:
            path.unlink(missing_ok=True)
        raise
    except OSError as e:
        for path in linked:
            path.unlink(missing_ok=True)
        raise LocalIOError(
            f"cannot write {e.filename}: {e.strerror}; nothing was written, fix it and run again"
        ) from e
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def create_client(client: NewClient, project_dir: Path) -> tuple[Path, Path]:
    """Write the plan skeleton and the stack file of a new client; returns their paths."""
    check_client(client)
    plan = project_dir / PLANS_DIR / f"{client.id}.yaml"
    stack = project_dir / STACKS_DIR / f"Pulumi.{client.id}.yaml"
    for path in (plan, stack):
        if path.exists() or path.is_symlink():
            raise ClientExists(
                f"{path} already exists: client {client.id} is onboarded already; edit its files, "
                "or choose another client id (drctl never overwrites a client)"
            )
    passphrase = new_passphrase()
    _publish_new({plan: plan_skeleton(client), stack: stack_document(client, passphrase)})
    return plan, stack


def next_steps(client: NewClient, plan: Path, stack: Path) -> str:
    """What the operator does next, as ``drctl client new`` prints it."""
    i = client.id
    sites = " ".join(f"--site {s.name}" for s in client.sites[:1])
    return f"""client {i} created:
  {plan}  (plan skeleton: fill in every TODO)
  {stack}  (stack: fresh encryption salt, a PSK per site as a secret)
next steps:
  1. fill in the TODOs of {PLANS_DIR}/{i}.yaml (for an OpenStack site: drctl plan import --cloud NAME)
  2. drctl validate {PLANS_DIR}/{i}.yaml
  3. set region, external_network, flavor_map, vault and prices in {STACKS_DIR}/Pulumi.{i}.yaml
  4. drctl preview {i}     then     drctl policy {i}
  5. drctl preflight {i}   (checks the recovery cloud before the first `pulumi up`)
  6. pulumi up --stack {i}
  7. drctl nca render {i} {sites} --out out/nca-{client.sites[0].name}
keep the passphrase (PULUMI_CONFIG_PASSPHRASE_FILE) with the client's secrets, outside the repository"""
