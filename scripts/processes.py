"""Whether a process is alive: the one answer used by the embedded store, the sandbox and the NCA
lab to tell a running owner from a crashed one."""
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
