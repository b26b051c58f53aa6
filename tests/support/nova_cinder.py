"""Nova and Cinder at their HTTP boundary: recorded responses of ``GET /limits`` and
``GET /flavors/detail`` (shapes as Nova 2.79 and Cinder 3.70 answer them) served on 127.0.0.1, so
openstacksdk runs for real down to its HTTP requests. Nova does not run here (it needs libvirt,
placement, a conductor and RabbitMQ); Cinder's API alone cannot report a real usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.activation.openstack_stub import OpenStackStub


@dataclass
class ComputeVolumeAnswers:
    """What the recorded responses say: absolute limits and usage, and the cloud's flavors
    (name -> (vCPUs, RAM MB))."""

    instances: tuple[int, int] = (10, 0)  # (limit, used)
    cores: tuple[int, int] = (20, 0)
    ram_mb: tuple[int, int] = (51200, 0)
    volumes: tuple[int, int] = (10, 0)
    gigabytes: tuple[int, int] = (1000, 0)
    flavors: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "m1.tiny": (1, 512),
            "m1.small": (1, 2048),
            "m1.medium": (2, 4096),
            "m1.large": (4, 8192),
            "m1.xlarge": (8, 16384),
        }
    )


class NovaCinderStub(OpenStackStub):
    """``compute_url`` and ``volume_url`` are the endpoint overrides of a clouds.yaml entry."""

    def __init__(self, answers: ComputeVolumeAnswers | None = None) -> None:
        super().__init__()
        self.compute_url = f"{self.url}/compute/"
        self.volume_url = f"{self.url}/volume/"
        self.serve(answers or ComputeVolumeAnswers())

    def serve(self, a: ComputeVolumeAnswers) -> None:
        u = self.url
        self.routes[("GET", "/compute/")] = (200, _versions("v2.1", "2.79", "2.1", f"{u}/compute/v2.1/"), {})
        self.routes[("GET", "/volume/")] = (200, _versions("v3.0", "3.70", "3.0", f"{u}/volume/v3/"), {})
        compute_limits = {
            "maxTotalInstances": a.instances[0],
            "totalInstancesUsed": a.instances[1],
            "maxTotalCores": a.cores[0],
            "totalCoresUsed": a.cores[1],
            "maxTotalRAMSize": a.ram_mb[0],
            "totalRAMUsed": a.ram_mb[1],
            "maxTotalKeypairs": 100,
            "maxServerMeta": 128,
            "maxServerGroups": 10,
            "maxServerGroupMembers": 10,
            "totalServerGroupsUsed": 0,
        }
        self.routes[("GET", "/compute/v2.1/limits")] = (
            200,
            {"limits": {"rate": [], "absolute": compute_limits}},
            {},
        )
        flavors = [
            {
                "id": str(i),
                "name": name,
                "vcpus": vcpus,
                "ram": ram,
                "disk": 0,
                "swap": 0,
                "OS-FLV-EXT-DATA:ephemeral": 0,
                "os-flavor-access:is_public": True,
                "rxtx_factor": 1.0,
                "links": [{"rel": "self", "href": f"{u}/compute/v2.1/flavors/{i}"}],
            }
            for i, (name, (vcpus, ram)) in enumerate(sorted(a.flavors.items()), start=1)
        ]
        self.routes[("GET", "/compute/v2.1/flavors/detail")] = (200, {"flavors": flavors}, {})
        volume_limits = {
            "maxTotalVolumes": a.volumes[0],
            "totalVolumesUsed": a.volumes[1],
            "maxTotalVolumeGigabytes": a.gigabytes[0],
            "totalGigabytesUsed": a.gigabytes[1],
            "maxTotalSnapshots": 10,
            "totalSnapshotsUsed": 0,
            "maxTotalBackups": 10,
            "totalBackupsUsed": 0,
            "maxTotalBackupGigabytes": 1000,
            "totalBackupGigabytesUsed": 0,
        }
        self.routes[("GET", "/volume/v3/limits")] = (
            200,
            {"limits": {"rate": [], "absolute": volume_limits}},
            {},
        )


def _versions(vid: str, version: str, min_version: str, href: str) -> dict:
    return {
        "versions": [
            {
                "id": vid,
                "status": "CURRENT",
                "version": version,
                "min_version": min_version,
                "links": [{"rel": "self", "href": href}],
            }
        ]
    }
