"""Network and user reconnection of a drill, per site (service description 8.1, 10).

PLACEHOLDER: being implemented in this session (issue 5); returns no site results yet."""
from __future__ import annotations


def check_sites(cfg, namespace: str, available: set[str]) -> tuple:
    return ()
