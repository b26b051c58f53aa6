"""BackupVault: the client's object-storage containers for backup data and for reports.

Private (no read/write ACL at all), versioned, labelled with client and purpose, protected from
deletion, and independent of the failover flag: the vault exists before, during and after a disaster.
``kind`` picks the store: ``swift`` (Swift containers through the OpenStack provider) or ``s3``
(S3 buckets with versioning and Object Lock through :mod:`drctl.components.s3_vault`, for
S3-only clouds; endpoint and credentials from the standard AWS variables of ``pulumi up``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

TYPE = "flexrecovery:index:BackupVault"
PURPOSES = ("backups", "reports")


@dataclass(frozen=True)
class ContainerSpec:
    role: str  # child suffix: "<vault>-<role>"
    name: str  # Swift container / S3 bucket name
    metadata: dict[str, str]


@dataclass(frozen=True)
class BackupVaultArgs:
    client_id: str
    client_name: str
    kind: str = "swift"  # swift | s3


def vault_containers(args: BackupVaultArgs) -> tuple[ContainerSpec, ...]:
    """The containers of a client's vault: ``<client>-backups`` and ``<client>-reports``."""
    return tuple(
        ContainerSpec(
            role=p,
            name=f"{args.client_id}-{p}",
            metadata={"client": args.client_id, "client-name": args.client_name, "purpose": p},
        )
        for p in PURPOSES
    )


class BackupVault(pulumi.ComponentResource):
    """The client's containers; ``containers`` maps purpose -> Container (or S3VaultBucket),
    ``names`` purpose -> its name."""

    def __init__(self, name: str, args: BackupVaultArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self.containers: dict[str, pulumi.Resource] = {}
        self.names: dict[str, pulumi.Output[str]] = {}
        if args.kind == "s3":
            from drctl.components.s3_vault import S3VaultBucket

            for spec in vault_containers(args):
                bucket = S3VaultBucket(
                    f"{name}-{spec.role}",
                    bucket=spec.name,
                    tags=spec.metadata,
                    opts=pulumi.ResourceOptions(parent=self, protect=True),
                )
                self.containers[spec.role] = bucket
                self.names[spec.role] = pulumi.Output.from_input(spec.name)
            self.register_outputs({f"{role}_container": n for role, n in self.names.items()})
            return
        for spec in vault_containers(args):
            # No container_read/container_write: private to the project. force_destroy stays false,
            # and protect=True makes `pulumi destroy` refuse to drop backups.
            container = openstack.objectstorage.Container(
                f"{name}-{spec.role}",
                name=spec.name,
                versioning=True,
                metadata=spec.metadata,
                force_destroy=False,
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
            self.containers[spec.role] = container
            self.names[spec.role] = container.name
        self.register_outputs({f"{role}_container": n for role, n in self.names.items()})
