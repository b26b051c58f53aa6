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
