"""Where things live: the one rule for the project directory and the local state directory.

- The **project directory** holds ``Pulumi.yaml``, ``stacks/`` and ``recovery_plans/``: it is
  ``$DRCTL_PROJECT_DIR``, else the nearest directory from the current one upwards that has a
  ``Pulumi.yaml`` of this project, else the source checkout drctl runs from (an editable install),
  else the current directory.
- The **state directory** holds what drctl keeps between commands (the embedded store under
  ``local/``, demo images under ``images/``, run reports under ``runs/``, the report-signing key
  under ``keys/``): it is ``$DRCTL_STATE_DIR``, else ``.state`` in the project directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from drctl.errors import InvalidInput

PROJECT = "flexible-recovery"
"""The Pulumi project name (``Pulumi.yaml``'s ``name``); stack config keys are ``<PROJECT>:<key>``."""

_CHECKOUT = Path(__file__).resolve().parents[1]


def _is_project(directory: Path) -> bool:
    marker = directory / "Pulumi.yaml"
    try:
        return marker.is_file() and f"name: {PROJECT}" in marker.read_text(errors="replace")
    except OSError:
        return False


def project_dir() -> Path:
    """The project directory (see the module docstring)."""
    env = os.environ.get("DRCTL_PROJECT_DIR")
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if _is_project(d):
            return d
    if _is_project(_CHECKOUT):
        return _CHECKOUT
    return cwd


def state_dir() -> Path:
    """The state directory (see the module docstring)."""
    env = os.environ.get("DRCTL_STATE_DIR")
    if env:
        return Path(env).expanduser()
    return project_dir() / ".state"


# Pulumi's own rule for stack names. A stack name becomes part of paths (stacks/Pulumi.<stack>.yaml,
# <state>/runs/<stack>/, <state>/active/<stack>.json) and of object keys, so nothing else may pass.
STACK_NAME_MAX = 100
_STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InvalidStackName(InvalidInput):
    """A stack name is not made of letters, digits, ``-``, ``_`` and ``.``."""


def check_stack_name(name: str) -> str:
    """``name`` if it is a safe stack name (letters, digits, ``-``, ``_``, ``.``; not starting with
    a dot or dash; at most 100 characters), else :class:`InvalidStackName` saying the rule."""
    if not isinstance(name, str) or not _STACK_NAME.fullmatch(name) or len(name) > STACK_NAME_MAX:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise InvalidStackName(
            f"stack name {shown} is not valid: use letters, digits, '-', '_' and '.', starting with a "
            f"letter or digit, at most {STACK_NAME_MAX} characters (stacks/Pulumi.<stack>.yaml names it)"
        )
    return name
