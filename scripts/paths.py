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
from pathlib import Path

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
