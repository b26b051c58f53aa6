"""Flexible Recovery: the per-client Pulumi program.

config -> plan -> components -> exports. One stack per client (stacks/Pulumi.<client>.yaml).
Offline, `drctl preview <client>` runs this same file under the SDK's mock runtime.
"""

from pathlib import Path

import pulumi
import pulumi_openstack as openstack

from drctl.components.backup_vault import BackupVault, BackupVaultArgs
from drctl.components.nca_config import NcaConfig, NcaConfigArgs
from drctl.components.recovered_server import (
    RecoveredServer,
    RecoveredServerArgs,
    recovery_order,
    restore_data_images,
    restore_image,
    restore_point_of,
    upstream_in_scope,
)
from drctl.components.recovery_space import RecoverySpace, RecoverySpaceArgs
from drctl.components.site_vpn import SiteVpn, SiteVpnArgs
from drctl.stack.config import load_plan_file
from drctl.stack.settings import (
    SECRET_SETTINGS,
    SETTING_TYPES,
    StackConfigInvalid,
    check_settings,
    choose_flavor,
    parse_settings,
)

PROJECT_DIR = Path(__file__).resolve().parents[1]  # Pulumi.yaml's directory (main: stacks/)
STACK = pulumi.get_stack()

# --- config -> plan -------------------------------------------------------------------------------
config = pulumi.Config()
where = f"stack {STACK}"
settings = parse_settings({k: config.get(k) for k in SETTING_TYPES if k not in SECRET_SETTINGS}, where=where)
plan = load_plan_file(PROJECT_DIR / settings.plan)
check_settings(settings, plan, where=where)
psks = config.require_secret_object("vpn_psks")


def site_psk(site: str) -> pulumi.Output[str]:
    def pick(all_psks: dict) -> str:
        if not all_psks or site not in all_psks:
            raise StackConfigInvalid(
                f"{where}: vpn_psks has no key for site {site}; "
                f"set it with `pulumi config set --secret --path vpn_psks.{site}`"
            )
        return all_psks[site]

    return psks.apply(pick)


provider = openstack.Provider("openstack", region=settings.region)
with_provider = pulumi.ResourceOptions(providers=[provider])

# --- components ----------------------------------------------------------------------------------
vault = BackupVault(
    "vault",
    BackupVaultArgs(client_id=plan.client.id, client_name=plan.client.name, kind=settings.vault),
    with_provider,
)

external = openstack.networking.get_network_output(
    name=settings.external_network, external=True, opts=pulumi.InvokeOptions(provider=provider)
)
space = RecoverySpace(
    "space",
    RecoverySpaceArgs(
        plan=plan, external_network_id=external.id, admin_ssh_public_key=settings.admin_ssh_public_key
    ),
    with_provider,
)

endpoints: dict[str, pulumi.Output[str]] = {}
bundles: dict[str, pulumi.Output] = {}
for site in plan.sites:
    if not any(sn.dhcp for sn in site.subnets):  # servers only, no workstations: nobody to reconnect
        pulumi.log.info(f"site {site.name} has no DHCP subnet (no workstations): no VPN, no NCA")
        continue
    psk = site_psk(site.name)
    vpn = SiteVpn(
        f"vpn-{site.name}",
        SiteVpnArgs(
            plan=plan,
            site=site,
            router_id=space.router.id,
            recovery_subnet_ids=[s.id for s in space.subnets.values()],
            psk=psk,
        ),
        with_provider,
    )
    endpoints[site.name] = vpn.service.external_v4_ip
    nca = NcaConfig(
        f"nca-{site.name}",
        NcaConfigArgs(
            plan=plan, site_name=site.name, psk=psk, vpn_endpoint_address=vpn.service.external_v4_ip
        ),
        pulumi.ResourceOptions(depends_on=[vpn]),
    )
    bundles[site.name] = nca.files

recovered: dict[str, RecoveredServer] = {}
if settings.failover:
    scope = settings.scope(plan)
    restore_point = restore_point_of(settings.activation.restore_point)
    upstream = upstream_in_scope(plan, scope)
    for name in recovery_order(plan, scope):
        server = plan.server(name)
        recovered[name] = RecoveredServer(
            f"srv-{name}",
            RecoveredServerArgs(
                client_id=plan.client.id,
                server=server,
                image_id=restore_image(name, settings.activation.images),
                flavor_name=choose_flavor(server, settings.flavors).name,
                restore_point=restore_point,
                networks={ref: n.id for ref, n in space.networks.items()},
                subnets={ref: s.id for ref, s in space.subnets.items()},
                security_group_ids=space.security_group_ids_of(name),
                key_pair=space.keypair.name,
                server_group_id=(
                    space.server_groups[server.anti_affinity].id if server.anti_affinity else None
                ),
                boot_volume_type=settings.boot_volume_type,
                data_images=restore_data_images(server, settings.activation.data_images),
            ),
            pulumi.ResourceOptions(providers=[provider], depends_on=[recovered[u] for u in upstream[name]]),
        )

# --- exports -------------------------------------------------------------------------------------
pulumi.export("client", plan.client.id)
pulumi.export("failover", settings.failover)
pulumi.export("containers", vault.names)
pulumi.export("router_id", space.router.id)
pulumi.export("subnets", {ref: s.id for ref, s in space.subnets.items()})
pulumi.export("vpn_endpoints", endpoints)
pulumi.export("nca_bundles", pulumi.Output.secret(bundles))
pulumi.export("recovered_servers", {n: r.instance.id for n, r in recovered.items()})
if not settings.admin_ssh_public_key:
    pulumi.export("operators_private_key", pulumi.Output.secret(space.keypair.private_key))
