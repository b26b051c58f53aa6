"""The Flexible Recovery policy rules, as plain validate functions and their Policy objects.

One module serves two runners: ``policies/__main__.py`` (the pack ``pulumi preview --policy-pack
policies`` starts) and ``drctl policy`` (``drctl.stack.policy``, which builds the same
``ResourceValidationArgs`` / ``StackValidationArgs`` from the offline preview graph). It imports
only the standard library and ``pulumi_policy``, never ``drctl``, and no sibling module by a
relative name: the pack's own virtualenv may not have drctl installed.

Size: over 400 lines, on purpose. The pack imports this file by its plain name and drctl as
``drctl.policies.dr_rules``, so a sibling module could not be imported the same way from both: every
rule of the pack lives here, in one section per concern.

Conventions the rules rely on (the program and its components keep them):
- ``props`` are the resource inputs with camelCase wire names; secrets are already unwrapped by the
  analyzer, so a secret is recognised by ``opts.additional_secret_outputs`` naming the property;
- values unknown during preview raise ``UnknownValueError``: a rule that cannot tell skips that one
  check rather than guessing;
- a recovered server is a compute Instance whose parent chain holds a ``RecoveredServer`` component
  and whose metadata carries ``restore_point``;
- the stack-wide facts a policy cannot see in resources (the failover flag, the plan's servers and
  their checks) come through the policy config, which ``drctl policy`` fills from the stack and
  the plan, and CI passes with ``--policy-pack-config``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

CONTAINER = "openstack:objectstorage/container:Container"
DYNAMIC = "pulumi-python:dynamic:Resource"  # the S3 vault's buckets (drctl.components.s3_vault)
SEC_GROUP = "openstack:networking/secGroup:SecGroup"
SEC_GROUP_RULE = "openstack:networking/secGroupRule:SecGroupRule"
ADDRESS_GROUP = "openstack:networking/addressGroupV2:AddressGroupV2"
NETWORK = "openstack:networking/network:Network"
SUBNET = "openstack:networking/subnet:Subnet"
ROUTER = "openstack:networking/router:Router"
ROUTER_INTERFACE = "openstack:networking/routerInterface:RouterInterface"
PORT = "openstack:networking/port:Port"
FLOATING_IP = "openstack:networking/floatingIp:FloatingIp"
IKE_POLICY = "openstack:vpnaas/ikePolicy:IkePolicy"
IPSEC_POLICY = "openstack:vpnaas/ipSecPolicy:IpSecPolicy"
SITE_CONNECTION = "openstack:vpnaas/siteConnection:SiteConnection"
INSTANCE = "openstack:compute/instance:Instance"
RECOVERED_SERVER = "RecoveredServer"  # last segment of the component's type token
RECOVERY_SPACE = "RecoverySpace"

ADMIN_PORTS: Mapping[int, str] = {
    22: "SSH",
    3389: "RDP",
    5985: "WinRM",
    5986: "WinRM",
    1433: "SQL Server",
    3306: "MySQL",
    5432: "PostgreSQL",
}
# Neutron's default per-project quotas (neutron.conf [quotas] quota_<name>, Neutron admin guide
# "Manage Networking service quotas"); drctl.stack.settings keeps the same table for stack files.
NEUTRON_DEFAULT_QUOTAS: Mapping[str, int] = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
    "rbac_policy": 10,
}
# What Neutron creates by itself in the project: the "default" group with its four rules (ingress
# from itself and egress, IPv4 and IPv6), and two egress rules in every new group, which count until
# the provider deletes them (deleteDefaultRules) or for good.
DEFAULT_GROUP_RULES = 4
NEW_GROUP_RULES = 2
STRONG_INTEGRITY = ("sha256", "sha384", "sha512")
MIN_PFS_GROUP = 14
MIN_PSK_LENGTH = 20


class _Unknown:
    """A value the engine cannot know during preview (e.g. an id computed by the cloud)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Any = _Unknown()


def field(props: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``props[key]``, ``default`` when absent, :data:`UNKNOWN` when not known during preview."""
    try:
        return props[key]
    except KeyError:
        return default
    except UnknownValueError:
        return UNKNOWN


def _is_set(value: Any) -> bool:
    return value is UNKNOWN or value not in (None, "", [], {})


# --- backup containers ---------------------------------------------------------------------------


def _open_acl_entries(acl: Any) -> list[str]:
    """The entries of a Swift ACL string that grant access beyond the client's own project."""
    if not isinstance(acl, str):
        return []
    entries = [e.strip() for e in acl.split(",") if e.strip()]
    # ".r:<referrer>" is anonymous access (referrers are trivially spoofed), ".rlistings" anonymous
    # listing, "*:*" / "*" any user of any project.
    return [e for e in entries if e.startswith(".r:") or e == ".rlistings" or e in ("*", "*:*")]


def containers_private(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Backup and report containers grant no public or cross-project access."""
    if args.resource_type != CONTAINER:
        return
    for key in ("containerRead", "containerWrite"):
        opened = _open_acl_entries(field(args.props, key))
        if opened:
            report(
                f"{key} {','.join(opened)!r} opens the container beyond the client's project; "
                f"remove {key} (the project's own users keep access) or list named project:user "
                "pairs only.",
                None,
            )


def containers_versioned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Backup and report containers keep old object versions, so an overwrite can be undone."""
    if args.resource_type != CONTAINER:
        return
    versioning = field(args.props, "versioning")
    legacy = field(args.props, "versioningLegacy")
    if versioning is True or versioning is UNKNOWN or _is_set(legacy):
        return
    report(
        "object versioning is off (versioning is not true); set versioning=True so an "
        "overwritten or deleted backup object can be recovered.",
        None,
    )


def _is_s3_vault_bucket(args: ResourceValidationArgs) -> bool:
    """A bucket of the S3 vault: a dynamic resource with a ``bucket`` and a ``purpose`` tag. Its
    provider always turns versioning and Object Lock on and sets no ACL, so of the container
    rules only protection depends on how the program declares it."""
    if args.resource_type != DYNAMIC:
        return False
    tags = field(args.props, "tags")
    return bool(field(args.props, "bucket")) and isinstance(tags, Mapping) and "purpose" in tags


def containers_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Backup and report containers cannot be deleted by the engine (protect, no forceDestroy)."""
    if args.resource_type != CONTAINER and not _is_s3_vault_bucket(args):
        return
    if not getattr(args.opts, "protect", False):
        report(
            "the container is not protected; declare it with "
            "ResourceOptions(protect=True) so `pulumi destroy` or a failover change cannot "
            "delete the client's backups.",
            None,
        )
    if field(args.props, "forceDestroy") is True:
        report(
            "forceDestroy is true, which lets the engine delete a non-empty container; remove forceDestroy.",
            None,
        )


# --- security groups -----------------------------------------------------------------------------


def _port_range(props: Mapping[str, Any]) -> tuple[int, int] | None:
    """The TCP/UDP ports a rule covers, ``None`` for a port-less protocol or unknown values."""
    protocol = field(props, "protocol")
    if protocol is UNKNOWN:
        return None
    if protocol not in (None, "", "any", "tcp", "udp", "6", "17", 6, 17):
        return None  # icmp, gre, esp...: no ports to open
    lo, hi = field(props, "portRangeMin"), field(props, "portRangeMax")
    if lo is UNKNOWN or hi is UNKNOWN:
        return None
    lo = int(lo) if lo not in (None, "") else 0
    hi = int(hi) if hi not in (None, "") else 0
    if lo == 0 and hi == 0:
        return (1, 65535)  # Neutron: no range means every port
    return (lo or 1, hi or lo)


def _world_remote(props: Mapping[str, Any]) -> str | None:
    """The remote spelled as the rule grants it, when that remote is the whole Internet."""
    prefix = field(props, "remoteIpPrefix")
    if prefix is UNKNOWN:
        return None
    if prefix in (None, ""):
        others = [field(props, k) for k in ("remoteGroupId", "remoteAddressGroupId")]
        if any(_is_set(v) for v in others):
            return None
        return "any address (no remoteIpPrefix nor remoteGroupId)"
    try:
        if ipaddress.ip_network(str(prefix), strict=False).prefixlen == 0:
            return str(prefix)
    except ValueError:
        return None
    return None


def _prop_sources(rule: PolicyResource, key: str, resource_type: str) -> list[PolicyResource]:
    """The stack's resources of ``resource_type`` a rule's ``key`` input comes from."""
    deps = (rule.property_dependencies or {}).get(key) or rule.dependencies or []
    return [d for d in deps if d.resource_type == resource_type]


def _world_addresses(group: PolicyResource) -> list[str]:
    """The addresses of an address group that cover the whole Internet (a /0)."""
    addresses = field(group.props, "addresses") or []
    if addresses is UNKNOWN:
        return []
    out = []
    for a in addresses:
        try:
            if ipaddress.ip_network(str(a), strict=False).prefixlen == 0:
                out.append(str(a))
        except ValueError:
            continue
    return out


def _remote_group_world(rule: PolicyResource) -> str | None:
    """The rule's remote address group, spelled for the message, when it admits the whole Internet
    or is not one this stack creates (its addresses cannot be checked)."""
    if not _is_set(field(rule.props, "remoteAddressGroupId")):
        return None
    groups = _prop_sources(rule, "remoteAddressGroupId", ADDRESS_GROUP)
    if not groups:
        return "an address group this stack does not create (its addresses cannot be checked)"
    for g in groups:
        world = _world_addresses(g)
        if world:
            return f"address group {g.name!r}, which holds {', '.join(world)},"
    return None


def no_admin_ports_open_to_world(args: StackValidationArgs, report: ReportViolation) -> None:
    """No ingress rule opens an administrative or database port to 0.0.0.0/0 or ::/0, directly or
    through an address group holding such a prefix."""
    for r in args.resources:
        if r.resource_type != SEC_GROUP_RULE:
            continue
        if str(field(r.props, "direction", "")).lower() != "ingress":
            continue
        remote = _world_remote(r.props) or _remote_group_world(r)
        if remote is None:
            continue
        ports = _port_range(r.props)
        if ports is None:
            continue
        lo, hi = ports
        hit = [f"{p} ({ADMIN_PORTS[p]})" for p in sorted(ADMIN_PORTS) if lo <= p <= hi]
        if hit:
            report(
                f"ingress from {remote} opens {', '.join(hit)}; restrict remoteIpPrefix to the "
                "client's site subnets (reached through the VPN) or use remoteGroupId or an address "
                "group of the client's networks.",
                r.urn,
            )


def _group_of_rule(rule: PolicyResource) -> list[PolicyResource]:
    """The stack's security groups a rule's securityGroupId comes from."""
    return _prop_sources(rule, "securityGroupId", SEC_GROUP)


def no_rules_on_default_group(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every security-group rule belongs to a group this stack creates, never a 'default' group."""
    for r in args.resources:
        if r.resource_type != SEC_GROUP_RULE:
            continue
        groups = _group_of_rule(r)
        if not groups:
            report(
                "securityGroupId refers to a group this stack does not create (such as the "
                "project's shared 'default' group); create a SecGroup in the stack and pass "
                "its id.",
                r.urn,
            )
            continue
        for g in groups:
            if field(g.props, "name") == "default":
                report(
                    f"the rule is added to security group {g.name!r} named 'default', "
                    "which every server of the project shares; use a dedicated group.",
                    r.urn,
                )


# --- VPN -----------------------------------------------------------------------------------------


def _pfs_group(value: Any) -> int | None:
    text = str(value or "")
    return int(text[5:]) if text.startswith("group") and text[5:].isdigit() else None


def vpn_strong_crypto(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """IKE and IPsec policies use IKEv2, AES-256, SHA-256 or stronger and PFS group14 or higher."""
    if args.resource_type not in (IKE_POLICY, IPSEC_POLICY):
        return
    p = args.props
    if args.resource_type == IKE_POLICY:
        version = field(p, "ikeVersion")
        if version is not UNKNOWN and version != "v2":
            report(f"ikeVersion is {version or 'unset (defaults to v1)'}; set ike_version='v2'.", None)
    else:
        transform = field(p, "transformProtocol")
        if transform is not UNKNOWN and transform not in (None, "", "esp"):
            report(
                f"transformProtocol is {transform!r}; set transform_protocol='esp' so the "
                "traffic is encrypted.",
                None,
            )
    enc = field(p, "encryptionAlgorithm")
    if enc is not UNKNOWN and not str(enc or "").startswith("aes-256"):
        report(
            f"encryptionAlgorithm is {enc or 'unset (defaults to aes-128)'}; "
            "set encryption_algorithm='aes-256'.",
            None,
        )
    auth = field(p, "authAlgorithm")
    if auth is not UNKNOWN and auth not in STRONG_INTEGRITY:
        report(
            f"authAlgorithm is {auth or 'unset (defaults to sha1)'}; SHA-1 and weaker are "
            "refused: set auth_algorithm='sha256' (or sha384/sha512).",
            None,
        )
    pfs = field(p, "pfs")
    group = _pfs_group(pfs)
    if pfs is not UNKNOWN and (group is None or group < MIN_PFS_GROUP):
        report(f"pfs is {pfs or 'unset (defaults to group5)'}; set pfs='group14' or higher.", None)


def vpn_psk_secret(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A site connection's pre-shared key is a Pulumi secret of at least 20 characters."""
    if args.resource_type != SITE_CONNECTION:
        return
    psk = field(args.props, "psk")
    if psk is not UNKNOWN and not psk:
        report("psk is empty; set the site's key with `pulumi config set --secret`.", None)
        return
    if "psk" not in (getattr(args.opts, "additional_secret_outputs", None) or []):
        report(
            "psk is not a secret: it would be stored in clear in the state; read it with "
            "config.require_secret() and declare additional_secret_outputs=['psk'].",
            None,
        )
    if psk is not UNKNOWN and len(str(psk)) < MIN_PSK_LENGTH:
        report(
            f"psk has {len(str(psk))} characters; use at least {MIN_PSK_LENGTH} random "
            "characters (e.g. `openssl rand -base64 33`).",
            None,
        )


# --- recovered servers ---------------------------------------------------------------------------


def _type_name(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def _recovered_server_ancestor(r: PolicyResource) -> PolicyResource | None:
    p = r.parent
    while p is not None:
        if _type_name(p.resource_type) == RECOVERED_SERVER:
            return p
        p = p.parent
    return None


def _boot_image(props: Mapping[str, Any]) -> Any:
    """The image an instance boots from: imageId/imageName, or an image-sourced block device."""
    for key in ("imageId", "imageName"):
        v = field(props, key)
        if _is_set(v):
            return v
    devices = field(props, "blockDevices") or []
    if devices is UNKNOWN:
        return UNKNOWN
    for dev in devices:
        if field(dev, "sourceType") == "image" and _is_set(field(dev, "uuid")):
            return field(dev, "uuid")
    return None


def _blank_volumes(props: Mapping[str, Any]) -> list[int]:
    """Indexes of an instance's block devices that are not image-sourced with a known image."""
    devices = field(props, "blockDevices") or []
    if devices is UNKNOWN:
        return []
    return [
        i
        for i, dev in enumerate(devices)
        if field(dev, "sourceType") is not UNKNOWN
        and (field(dev, "sourceType") != "image" or not _is_set(field(dev, "uuid")))
    ]


def recovered_server_only_in_failover(args: StackValidationArgs, report: ReportViolation) -> None:
    """Compute instances exist only as RecoveredServers of a failover, booted from a restore image.

    Policy config ``failover`` (bool), when given, is the stack's flag: with ``false`` no instance
    may exist at all. ``drctl policy`` always passes it; in CI pass it with --policy-pack-config.
    """
    failover = args.get_config().get("failover")
    for r in args.resources:
        if r.resource_type != INSTANCE:
            continue
        if failover is False:
            report(
                "a compute instance is declared while the stack's failover flag is false; "
                "servers are only restored by an activation (failover: true).",
                r.urn,
            )
            continue
        if _recovered_server_ancestor(r) is None:
            report(
                "the instance is not part of a RecoveredServer component; declare recovered "
                "servers only through RecoveredServer (failover mode).",
                r.urn,
            )
        if _boot_image(r.props) is None:
            report(
                "the instance names no boot image; boot it from the restore image recorded "
                "in activation.images.<server>.",
                r.urn,
            )
        for i in _blank_volumes(r.props):
            report(
                f"block device {i} is not created from a restore image (a blank or foreign "
                "volume would come back without the server's data); create it from the image "
                "recorded in activation.data_images.<server>.<disk>.",
                r.urn,
            )
        metadata = field(r.props, "metadata") or {}
        if metadata is not UNKNOWN and not _is_set(field(metadata, "restore_point")):
            report(
                "metadata.restore_point is empty, so the image is not a recorded restore "
                "image; an activation records the restore point in activation.restore_point "
                "and each image in activation.images.<server>.",
                r.urn,
            )


def _server_summaries(args: StackValidationArgs) -> list[tuple[str | None, str, Any]]:
    """(urn to blame, server name, checks) for every dr server the config or a component names."""
    configured = args.get_config().get("servers")
    if configured is not None:
        return [
            (None, str(s.get("name")), s.get("checks")) for s in configured if s.get("serverClass") == "dr"
        ]
    found: list[tuple[str | None, str, Any]] = []
    for r in args.resources:
        kind = _type_name(r.resource_type)
        if kind == RECOVERED_SERVER and field(r.props, "serverClass") == "dr":
            found.append((r.urn, r.name, field(r.props, "checks")))
        elif kind == RECOVERY_SPACE:
            servers = field(r.props, "servers") or []
            if servers is UNKNOWN:
                continue
            for s in servers:
                if field(s, "serverClass") == "dr":
                    found.append((r.urn, str(field(s, "name")), field(s, "checks")))
    return found


def dr_servers_have_checks(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every dr-class server has at least one verification check.

    The servers come from the policy config ``servers`` (``[{name, serverClass, checks}]``, what
    ``drctl policy`` passes from the recovery plan) or else from the same-shaped ``servers`` input
    of RecoverySpace components and the ``serverClass``/``checks`` inputs of RecoveredServer
    components. When neither describes a server the rule is not applicable.
    """
    summaries = _server_summaries(args)
    if not summaries and args.get_config().get("servers") is None:
        args.not_applicable("no policy config nor component describes the servers' checks")
    for urn, server, checks in summaries:
        if checks is UNKNOWN:
            continue
        if not checks:
            report(
                f"dr server {server!r} has no check, so a drill cannot prove it works; add "
                "at least one check (port, service, http or command) to servers[].checks "
                "in the recovery plan.",
                urn,
            )


# --- quotas --------------------------------------------------------------------------------------


def _count(args: StackValidationArgs, *types: str) -> int:
    return sum(1 for r in args.resources if r.resource_type in types)


def _dhcp_subnets(args: StackValidationArgs) -> int:
    """Subnets with DHCP on: Neutron gives each a DHCP port in the project."""
    return sum(
        1
        for r in args.resources
        if r.resource_type == SUBNET and field(r.props, "enableDhcp", True) in (True, UNKNOWN)
    )


def quota_needs(args: StackValidationArgs) -> dict[str, tuple[int, str]]:
    """quota name -> (what the graph needs in the project, how that count is made)."""
    groups = _count(args, SEC_GROUP)
    rules = _count(args, SEC_GROUP_RULE)
    interfaces, ports, dhcp = _count(args, ROUTER_INTERFACE), _count(args, PORT), _dhcp_subnets(args)
    return {
        "security_group": (groups + 1, f"{groups} groups declared + the project's 'default' group"),
        "security_group_rule": (
            rules + DEFAULT_GROUP_RULES + NEW_GROUP_RULES * groups,
            f"{rules} rules declared + {DEFAULT_GROUP_RULES} of the 'default' group + {NEW_GROUP_RULES} "
            f"egress rules Neutron adds to each of the {groups} new groups",
        ),
        "network": (_count(args, NETWORK), "networks declared"),
        "subnet": (_count(args, SUBNET), "subnets declared"),
        "router": (_count(args, ROUTER), "routers declared"),
        "port": (
            interfaces + ports + dhcp,
            f"{interfaces} router interfaces + {ports} server ports + {dhcp} DHCP ports",
        ),
        "floatingip": (_count(args, FLOATING_IP), "floating IPs declared"),
    }


def within_quotas(args: StackValidationArgs, report: ReportViolation) -> None:
    """The stack's network resources fit the recovery project's quotas.

    Policy config ``quotas`` ({name: limit}, -1 unlimited) is the project's quotas as the stack file
    records them (``drctl policy`` passes them); absent names take Neutron's defaults.
    """
    configured = args.get_config().get("quotas") or {}
    for name, (need, how) in quota_needs(args).items():
        limit = configured.get(name, NEUTRON_DEFAULT_QUOTAS.get(name))
        if limit is None or int(limit) < 0 or need <= int(limit):
            continue
        report(
            f"quota {name}: the stack needs {need} ({how}) and the project allows {limit}; raise the "
            f"project's {name} quota to at least {need} (`openstack quota set`) and record it in the "
            f"stack's quotas.{name}, or shrink the recovery space (fewer distinct roles, subnets or "
            "servers in scope).",
            None,
        )


def predicted_rto_within_target(args: StackValidationArgs, report: ReportViolation) -> None:
    """Each server's predicted time to available is within its RTO.

    The predictions come from the policy config ``predictions`` (``[{name, serverClass,
    predictedS, rtoS, measuredBy}]``), which ``drctl policy`` fills from ``drctl plan rto``: the
    critical path of restore, boot and check times measured by the client's last drill. Without
    that config the rule is not applicable. ``drctl policy`` raises the rule to mandatory (the
    config's ``enforcementLevel``) and passes the dr servers only once a drill measured them."""
    predictions = args.get_config().get("predictions")
    if predictions is None:
        args.not_applicable("no predicted RTO in the policy config (`drctl policy` passes it)")
    for p in predictions or []:
        predicted, target = p.get("predictedS"), p.get("rtoS")
        if (
            not isinstance(predicted, int | float)
            or not isinstance(target, int | float)
            or predicted <= target
        ):
            continue
        basis = f"measured by drill {p['measuredBy']}" if p.get("measuredBy") else "from default figures"
        report(
            f"{p.get('serverClass')} server {p.get('name')!r} is predicted available after "
            f"{predicted / 60:.0f} min ({basis}), over its RTO of {target / 60:.0f} min; shorten its "
            "boot dependencies, speed up its restore (smaller disks, a faster store) or agree a "
            "longer RTO (`drctl plan rto` shows the critical path).",
            None,
        )


def all_policies() -> list[Policy]:
    """Every rule of the pack, in report order, with its enforcement level."""
    mandatory = EnforcementLevel.MANDATORY
    return [
        ResourceValidationPolicy(
            name="backup-containers-private",
            enforcement_level=mandatory,
            description="Backup and report containers grant no public or cross-project access.",
            validate=containers_private,
        ),
        ResourceValidationPolicy(
            name="backup-containers-versioned",
            enforcement_level=mandatory,
            description="Backup and report containers have object versioning on.",
            validate=containers_versioned,
        ),
        ResourceValidationPolicy(
            name="backup-containers-protected",
            enforcement_level=mandatory,
            description="Backup and report containers are protected from deletion.",
            validate=containers_protected,
        ),
        StackValidationPolicy(
            name="no-admin-ports-open-to-world",
            enforcement_level=mandatory,
            description="No security-group rule opens 22, 3389, 5985-5986, 1433, 3306 or 5432 "
            "to 0.0.0.0/0 or ::/0, directly or through an address group.",
            validate=no_admin_ports_open_to_world,
        ),
        StackValidationPolicy(
            name="no-rules-on-default-security-group",
            enforcement_level=mandatory,
            description="Security-group rules go on groups the stack creates, never a shared "
            "'default' group.",
            validate=no_rules_on_default_group,
        ),
        ResourceValidationPolicy(
            name="vpn-strong-crypto",
            enforcement_level=mandatory,
            description="IKE/IPsec policies use IKEv2, AES-256, SHA-256+ and PFS group14+.",
            validate=vpn_strong_crypto,
        ),
        ResourceValidationPolicy(
            name="vpn-psk-secret",
            enforcement_level=mandatory,
            description="VPN pre-shared keys are secrets of at least 20 characters.",
            validate=vpn_psk_secret,
        ),
        StackValidationPolicy(
            name="recovered-server-only-in-failover",
            enforcement_level=mandatory,
            description="Compute instances exist only in failover, as RecoveredServers booted "
            "from a recorded restore image.",
            validate=recovered_server_only_in_failover,
            config_schema=PolicyConfigSchema(properties={"failover": {"type": "boolean"}}),
        ),
        StackValidationPolicy(
            name="dr-servers-have-checks",
            enforcement_level=mandatory,
            description="Every dr-class server has at least one verification check.",
            validate=dr_servers_have_checks,
            config_schema=PolicyConfigSchema(properties={"servers": {"type": "array"}}),
        ),
        StackValidationPolicy(
            name="recovery-space-within-quotas",
            enforcement_level=mandatory,
            description="Security groups, rules, networks, subnets, ports and routers fit the "
            "project's network quotas (default: Neutron's).",
            validate=within_quotas,
            config_schema=PolicyConfigSchema(properties={"quotas": {"type": "object"}}),
        ),
        StackValidationPolicy(
            name="predicted-rto-within-target",
            enforcement_level=EnforcementLevel.ADVISORY,
            description="Each server's predicted time to available (last drill's measurements) "
            "is within its RTO; mandatory for dr servers once a drill measured them.",
            validate=predicted_rto_within_target,
            config_schema=PolicyConfigSchema(properties={"predictions": {"type": "array"}}),
        ),
    ]
