"""RecoveredServer: one restored server, created only while the stack's ``failover`` flag is on.

It boots from the restore image recorded in ``activation.images`` (a boot volume of the plan's
boot-disk size) and gets one more volume per data disk from ``activation.data_images`` (plan
order, the plan's sizes, attached after the boot volume; same volume type). It gets its plan
flavor through the stack's flavor map, one port per plan NIC with the fixed production IP and
the server's security groups (base and its roles), and metadata naming client and restore point. It waits for the
RecoveredServers of its upstream servers, so the engine creates them in plan order;
:func:`recovery_order` computes that order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_openstack as openstack

from drctl.paths import PROJECT
from drctl.plan.model import Plan, Server
from drctl.stack.settings import StackConfigInvalid

TYPE = "flexrecovery:index:RecoveredServer"


def upstream_in_scope(plan: Plan, scope: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """For each in-scope server, the in-scope servers it must wait for.

    Dependencies through a server left out of the scope are followed (a -> b -> c with b out of
    scope makes a wait for c): the order of what is restored stays the plan's order."""
    in_scope = set(scope)
    out: dict[str, tuple[str, ...]] = {}
    for name in scope:
        found: list[str] = []
        seen: set[str] = set()
        stack = list(plan.server(name).depends_on)
        while stack:
            dep = stack.pop(0)
            if dep in seen:
                continue
            seen.add(dep)
            if dep in in_scope:
                found.append(dep)
            else:
                stack.extend(plan.server(dep).depends_on)
        out[name] = tuple(d for d in scope if d in found)  # plan order, stable
    return out


def recovery_order(plan: Plan, scope: Sequence[str]) -> tuple[str, ...]:
    """In-scope servers, every server after its upstreams (ties keep plan order)."""
    ups = upstream_in_scope(plan, scope)
    ordered: list[str] = []
    remaining = [s.name for s in plan.servers if s.name in set(scope)]
    while remaining:
        ready = [n for n in remaining if all(u in ordered for u in ups[n])]
        if not ready:  # plan checks reject cycles; this guards a plan loaded without them
            raise StackConfigInvalid(f"servers {', '.join(remaining)} depend on each other in a cycle")
        ordered.append(ready[0])
        remaining.remove(ready[0])
    return tuple(ordered)


def restore_image(server: str, images: Mapping[str, str]) -> str:
    """The recorded image of ``server``, or a config error that says what to do."""
    image = images.get(server)
    if not image:
        raise StackConfigInvalid(
            f"{PROJECT}:activation.images has no restore image for server {server}; restore it first "
            f"(the activation records the image id there), or leave {server} out of activation.servers"
        )
    return image


def restore_data_images(server: Server, data_images: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """disk -> recorded image for every non-boot disk of ``server``, or a config error naming the disk."""
    recorded = data_images.get(server.name) or {}
    missing = [d.name for d in server.data_disks if not recorded.get(d.name)]
    if missing:
        raise StackConfigInvalid(
            f"{PROJECT}:activation.data_images.{server.name} has no restore image for disk(s) "
            f"{', '.join(missing)} of server {server.name}; the activation records one per data disk "
            f"(activation.data_images.{server.name}.<disk>), or leave {server.name} out of activation.servers"
        )
    return {d.name: recorded[d.name] for d in server.data_disks}


def restore_point_of(restore_point: str) -> str:
    """The activation's restore point, required as soon as servers are recovered."""
    if not restore_point:
        raise StackConfigInvalid(
            f"{PROJECT}:activation.restore_point is empty while failover is on; the activation records "
            "the restore point (snapshot id) the images come from: set it, or turn failover off"
        )
    return restore_point


@dataclass(frozen=True)
class RecoveredServerArgs:
    client_id: str
    server: Server
    image_id: str
    flavor_name: str
    restore_point: str
    networks: Mapping[str, pulumi.Input[str]]  # "site/subnet" -> network id
    subnets: Mapping[str, pulumi.Input[str]]  # "site/subnet" -> subnet id
    security_group_ids: Sequence[pulumi.Input[str]]  # base and role groups of the server
    key_pair: pulumi.Input[str]
    server_group_id: pulumi.Input[str] | None = None
    boot_volume_type: str = ""
    extra_metadata: Mapping[str, str] = field(default_factory=dict)
    data_images: Mapping[str, str] = field(default_factory=dict)  # disk -> image, every non-boot disk


class RecoveredServer(pulumi.ComponentResource):
    """Children: ``-port-<i>`` per NIC and ``-instance``."""

    def __init__(
        self, name: str, args: RecoveredServerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        server = args.server
        # The component's own depends_on does not hold back its children: pass it on explicitly.
        waits = list((opts.depends_on if opts and isinstance(opts.depends_on, list) else []) or [])
        self.ports = []
        for i, nic in enumerate(server.nics):
            self.ports.append(
                openstack.networking.Port(
                    f"{name}-port-{i}",
                    name=f"{args.client_id}-{server.name}-{i}",
                    network_id=args.networks[nic.subnet],
                    fixed_ips=[
                        openstack.networking.PortFixedIpArgs(
                            subnet_id=args.subnets[nic.subnet], ip_address=nic.ip
                        )
                    ],
                    security_group_ids=list(args.security_group_ids),
                    admin_state_up=True,
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        boot = server.boot_disk
        metadata = {
            "client": args.client_id,
            "server": server.name,
            "restore_point": args.restore_point,
            "class": server.protection,
            **args.extra_metadata,
        }
        self.instance = openstack.compute.Instance(
            f"{name}-instance",
            name=server.name,
            flavor_name=args.flavor_name,
            image_id=args.image_id,
            block_devices=[
                openstack.compute.InstanceBlockDeviceArgs(
                    source_type="image",
                    uuid=args.image_id,
                    destination_type="volume",
                    volume_size=boot.size_gb,
                    boot_index=0,
                    delete_on_termination=True,
                    volume_type=args.boot_volume_type or None,
                )
            ]
            + [
                # Data disks: volumes from their restore images, in plan order, never bootable.
                openstack.compute.InstanceBlockDeviceArgs(
                    source_type="image",
                    uuid=args.data_images[d.name],
                    destination_type="volume",
                    volume_size=d.size_gb,
                    boot_index=-1,
                    delete_on_termination=True,
                    volume_type=args.boot_volume_type or None,
                )
                for d in server.data_disks
            ],
            networks=[openstack.compute.InstanceNetworkArgs(port=p.id) for p in self.ports],
            scheduler_hints=(
                [openstack.compute.InstanceSchedulerHintArgs(group=args.server_group_id)]
                if args.server_group_id is not None
                else None
            ),
            key_pair=args.key_pair,
            metadata=metadata,
            opts=pulumi.ResourceOptions(parent=self, depends_on=waits),
        )
        self.register_outputs({"id": self.instance.id, "addresses": [nic.ip for nic in server.nics]})
