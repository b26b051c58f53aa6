"""Argument types shared by the sub-commands: a bad value is a usage error (exit 2) naming the
argument, before any file is read."""

from __future__ import annotations

import argparse

from drctl.paths import InvalidStackName, check_stack_name


def stack_name(value: str) -> str:
    """``STACK`` arguments: a safe stack name (see :func:`drctl.paths.check_stack_name`)."""
    try:
        return check_stack_name(value)
    except InvalidStackName as e:
        raise argparse.ArgumentTypeError(e.message) from None


def _int(value: str, minimum: int, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"{value} must be {what}")
    return n


def positive_int(value: str) -> int:
    """Counts and sizes: 1 or more (a thread pool of 0, a retention of -5 days mean nothing)."""
    return _int(value, 1, "1 or more")


def non_negative_int(value: str) -> int:
    """``--keep-*`` counts: 0 (the rule is off) or more; -1 would silently keep only the newest."""
    return _int(value, 0, "0 or more")


MAX_PARALLEL = 256


def parallelism(value: str) -> int:
    """``--parallel``: transfers in flight, 1 to 256 (more only queues threads and memory)."""
    n = _int(value, 1, "1 or more")
    if n > MAX_PARALLEL:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_PARALLEL} transfers in flight")
    return n
