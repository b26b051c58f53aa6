"""The plan's checks: what verifies a restored server. One :class:`Check` type, read from the
plan (``checks[]``), run by the verification (``drctl.activation.verify``) and named in reports and
policies by :meth:`Check.describe`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drctl.errors import InvalidInput

CHECK_KINDS = ("port", "service", "http", "command", "file")


@dataclass(frozen=True)
class Check:
    """One verification of a restored server: a plan's ``checks[]`` item, also what the
    verification runs (``drctl.activation.verify``). ``kind`` is one of :data:`CHECK_KINDS`;
    ``spec`` is normalised on construction, so every reader sees one shape per kind:

    - port: ``{"port": int, "protocol": "tcp"|"udp", "host": str|None}`` (the plan gives ``port: N``)
    - http: ``{"url": str, "status": int (200), "contains": str|None}``
    - file: ``{"path": str, "contains": str|None}`` (the plan gives ``file: PATH``)
    - service, command: the non-empty string

    A spec that cannot be normalised raises :class:`InvalidInput` naming the check.
    """

    kind: str
    spec: Any
    critical: bool = True

    def __post_init__(self) -> None:
        if self.kind not in CHECK_KINDS:
            raise InvalidInput(f"check kind {self.kind!r}: use one of {', '.join(CHECK_KINDS)}")
        try:
            object.__setattr__(self, "spec", _normalise_check(self.kind, self.spec))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"check {self.kind} {self.spec!r}: {e}") from e

    @classmethod
    def from_dict(cls, raw: Any) -> Check:
        """From the plan's form: a mapping like ``{"port": 53, "critical": false}``."""
        if not isinstance(raw, Mapping):
            raise InvalidInput(f'check {raw!r}: expected an object like {{"port": 80}}')
        kinds = [k for k in raw if k != "critical"]
        if len(kinds) != 1 or kinds[0] not in CHECK_KINDS:
            raise InvalidInput(f"check {dict(raw)!r}: give exactly one of {', '.join(CHECK_KINDS)}")
        return cls(kinds[0], raw[kinds[0]], bool(raw.get("critical", True)))

    def to_plan_dict(self) -> dict[str, Any]:
        """Back to the plan's form (what :meth:`from_dict` and ``--checks-json`` take)."""
        d: dict[str, Any] = {self.kind: self.spec}
        if not self.critical:
            d["critical"] = False
        return d

    def describe(self) -> str:
        """What is checked, in a few words: the name of the check in reports and policies."""
        s = self.spec
        if self.kind == "port":
            where = f"{s['host']}:" if s.get("host") else ""
            return f"port {where}{s['port']}" + ("/udp" if s["protocol"] == "udp" else "")
        if self.kind == "http":
            text = f"http {s['url']} -> {s['status']}"
            return text + (f" containing {s['contains']!r}" if s.get("contains") else "")
        if self.kind == "file":
            return f"file {s['path']}" + (f" containing {s['contains']!r}" if s.get("contains") else "")
        return f"{self.kind} {s}"


def _normalise_check(kind: str, spec: Any) -> Any:
    if kind == "port":
        d = spec if isinstance(spec, Mapping) else {"port": spec}
        port = int(d["port"])
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        proto = str(d.get("protocol", "tcp"))
        if proto not in ("tcp", "udp"):
            raise ValueError(f"protocol {proto!r}: use tcp or udp")
        return {"port": port, "protocol": proto, "host": d.get("host")}
    if kind == "http":
        if not isinstance(spec, Mapping) or "url" not in spec:
            raise ValueError("give {url, status, contains}")
        return {
            "url": str(spec["url"]),
            "status": int(spec.get("status", 200)),
            "contains": spec.get("contains"),
        }
    if kind == "file":
        d = spec if isinstance(spec, Mapping) else {"path": spec}
        return {"path": str(d["path"]), "contains": d.get("contains")}
    if not isinstance(spec, str) or not spec.strip():  # service, command
        raise ValueError(f"a {kind} check takes a non-empty string")
    return spec
