"""Process helpers shared by the embedded store, the sandbox and the NCA lab: whether a process is
alive (a running owner vs a crashed one), and SIGTERM turned into the Ctrl-C clean-up path."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an exited child not yet reaped is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def sigterm_as_interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: raise KeyboardInterrupt, so a service manager, a CI timeout or `kill` takes
    the same clean-up path as Ctrl-C (sandbox torn down, locks released, partial files removed)."""
    raise KeyboardInterrupt(f"signal {signum}")
