"""What an activation and the backup space cost: the figures the monthly bill is made of.

Pure: a :class:`PriceTable` (the stack's ``prices`` config) applied to what a full activation of
the stack creates (one instance per in-scope server by its flavor, a volume and an image per
restored disk, the router's public IP, one VPN per reconnected site) and to the repository's
stored bytes. ``drctl cost`` (``drctl.commands.client_cmds``) lists the repository's objects for
those bytes (:func:`stored_bytes`, the one I/O here, over a given store); the drill report and the
console's client page show the same figures.

Prices are per hour for what runs (instances, public IPs, VPN) and per GB-month for what is
stored (volumes, images, object storage); a month counts 30 days.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drctl.errors import InvalidInput
from drctl.paths import PROJECT
from drctl.plan.model import Plan
from drctl.stack.settings import StackSettings, choose_flavor
from drctl.storage.base import Storage

HOURS_PER_DAY = 24
DAYS_PER_MONTH = 30
GB = 1024**3

ILLUSTRATIVE_LABEL = "ILLUSTRATIVE prices, not a quote: replace them with the recovery cloud's price list"
ILLUSTRATIVE_PRICES: dict[str, Any] = {
    "label": ILLUSTRATIVE_LABEL,
    "currency": "EUR",
    "instance_hour": {
        "m1.tiny": 0.01,
        "m1.small": 0.03,
        "m1.medium": 0.06,
        "m1.large": 0.12,
        "m1.xlarge": 0.24,
    },
    "volume_gb_month": 0.05,
    "image_gb_month": 0.03,
    "floating_ip_hour": 0.005,
    "vpn_hour": 0.02,
    "object_storage_gb_month": 0.01,
}
"""The table ``drctl client new`` writes into a new stack (flavors of its default flavor_map)."""

_RATES = (
    "volume_gb_month",
    "image_gb_month",
    "floating_ip_hour",
    "vpn_hour",
    "object_storage_gb_month",
)


class PricesInvalid(InvalidInput):
    """The stack's price table is missing, incomplete or not numbers."""


@dataclass(frozen=True)
class PriceTable:
    currency: str
    label: str
    instance_hour: Mapping[str, float]
    volume_gb_month: float
    image_gb_month: float
    floating_ip_hour: float
    vpn_hour: float
    object_storage_gb_month: float


def _price(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PricesInvalid(f"{where}: expected a price (a number), got {value!r}")
    try:
        price = float(value)
    except ValueError:
        raise PricesInvalid(f"{where}: expected a price (a number), got {value!r}") from None
    if not price >= 0 or price == float("inf"):
        raise PricesInvalid(f"{where}: a price must be a finite number of 0 or more, got {value!r}")
    return price


def parse_prices(raw: Mapping[str, Any], *, where: str) -> PriceTable:
    """The typed table from the ``prices`` config; every error names the field."""
    key = f"{where}: {PROJECT}:prices"
    if not raw:
        raise PricesInvalid(
            f"{key}: the stack has no price table; copy the prices block of stacks/Pulumi.demo.yaml "
            "and put the recovery cloud's prices in it"
        )
    missing = [k for k in ("instance_hour", *_RATES) if k not in raw]
    if missing:
        raise PricesInvalid(f"{key}: missing {', '.join(missing)} (see stacks/Pulumi.demo.yaml)")
    flavors = raw["instance_hour"]
    if not isinstance(flavors, dict):
        raise PricesInvalid(f"{key}.instance_hour: expected flavor: price per hour pairs")
    return PriceTable(
        currency=str(raw.get("currency") or "EUR"),
        label=str(raw.get("label") or ""),
        instance_hour={str(f): _price(p, f"{key}.instance_hour.{f}") for f, p in flavors.items()},
        **{r: _price(raw[r], f"{key}.{r}") for r in _RATES},
    )


@dataclass(frozen=True)
class CostLine:
    item: str  # "instance db01 (m1.small)", "volumes", ...
    quantity: float
    unit: str  # "h", "GB-month", ...
    per_day: float


@dataclass(frozen=True)
class CostEstimate:
    currency: str
    label: str
    days: int
    lines: tuple[CostLine, ...]
    backup_stored_bytes: int | None  # None: the repository was not read
    backup_month: float | None

    @property
    def activation_per_day(self) -> float:
        return sum(line.per_day for line in self.lines)

    @property
    def activation_total(self) -> float:
        return self.activation_per_day * self.days

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "prices_label": self.label,
            "days": self.days,
            "activation_per_day": round(self.activation_per_day, 2),
            "activation_total": round(self.activation_total, 2),
            "lines": [
                {"item": x.item, "quantity": x.quantity, "unit": x.unit, "per_day": round(x.per_day, 4)}
                for x in self.lines
            ],
            "backup_stored_bytes": self.backup_stored_bytes,
            "backup_per_month": None if self.backup_month is None else round(self.backup_month, 2),
        }


def stored_bytes(storage: Storage) -> int:
    """The bytes a repository's objects take in its store (current versions, listed, not read)."""
    return sum(o.size for o in storage.list(""))


def reconnected_sites(plan: Plan) -> list[str]:
    """Sites that get a VPN: those with workstations (a DHCP subnet), as the Pulumi program does."""
    return [s.name for s in plan.sites if any(sn.dhcp for sn in s.subnets)]


def estimate(
    plan: Plan,
    settings: StackSettings,
    prices: PriceTable,
    *,
    days: int,
    stored_bytes: int | None,
    where: str,
) -> CostEstimate:
    """The cost of a full activation of the stack (its default scope) for ``days`` days, and the
    monthly cost of ``stored_bytes`` of backup space."""
    lines: list[CostLine] = []
    disk_gb = 0
    for name in settings.scope(plan):
        server = plan.server(name)
        flavor = choose_flavor(server, settings.flavors).name
        if flavor not in prices.instance_hour:
            raise PricesInvalid(
                f"{where}: {PROJECT}:prices.instance_hour has no price for flavor {flavor} "
                f"(server {name}); add it"
            )
        hourly = prices.instance_hour[flavor]
        lines.append(CostLine(f"instance {name} ({flavor})", HOURS_PER_DAY, "h", hourly * HOURS_PER_DAY))
        disk_gb += sum(d.size_gb for d in server.disks)
    per_gb_day = 1 / DAYS_PER_MONTH
    lines.append(CostLine("volumes", disk_gb, "GB", disk_gb * prices.volume_gb_month * per_gb_day))
    lines.append(CostLine("images", disk_gb, "GB", disk_gb * prices.image_gb_month * per_gb_day))
    lines.append(CostLine("public IP (router)", 1, "IP", prices.floating_ip_hour * HOURS_PER_DAY))
    vpns = len(reconnected_sites(plan))
    lines.append(CostLine("site VPNs", vpns, "VPN", vpns * prices.vpn_hour * HOURS_PER_DAY))
    backup_month = None if stored_bytes is None else stored_bytes / GB * prices.object_storage_gb_month
    return CostEstimate(prices.currency, prices.label, days, tuple(lines), stored_bytes, backup_month)


def format_estimate(est: CostEstimate) -> str:
    """The estimate as ``drctl cost`` prints it."""
    c = est.currency
    out = [f"prices: {est.label}"] if est.label else []
    out.append(f"{'item':<34} {'quantity':>10}  {'per day':>10}")
    for x in est.lines:
        out.append(f"{x.item:<34} {x.quantity:>8g} {x.unit:<3} {x.per_day:>8.2f} {c}")
    out.append(
        f"activation: {est.activation_per_day:.2f} {c} per day, {est.activation_total:.2f} {c} for {est.days} days"
    )
    if est.backup_month is not None and est.backup_stored_bytes is not None:
        gb = est.backup_stored_bytes / GB
        out.append(f"backup space: {gb:.2f} GB stored, {est.backup_month:.2f} {c} per month")
    return "\n".join(out)
