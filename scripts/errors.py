"""The one exception tree of drctl, and its exit codes.

Every failure a user can cause or meet is a subclass of :class:`DrctlError`. Its message names the
object at fault (plan file and field, bucket/key, chunk id, server, stack) and the next step; its
``exit_code`` is what the CLI returns. The CLI prints ``drctl: <message>`` on stderr and never a
traceback for these. Third-party errors are translated where they enter (``raise X(...) from e``).

Exit codes (documented in the README; restic's where restic has one):

====  ==========================================================
0     success
1     invalid input: a plan, stack config or policy violation (the report says which)
2     usage error (bad arguments; argparse)
10    repository does not exist
11    repository is locked by another process / activation
12    wrong password (no key slot opens with it)
13    integrity failure: tampered, truncated, swapped or missing data
14    storage unreachable or refusing access (network, credentials)
15    local I/O failure (disk full, output path unusable)
16    an external tool or service the command needs is missing
20    an activation, drill or check ran and at least one server failed
130   interrupted (Ctrl-C or SIGTERM); nothing half-written is left behind
====  ==========================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_REPO_MISSING = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSWORD = 12
EXIT_INTEGRITY = 13
EXIT_STORAGE = 14
EXIT_LOCAL_IO = 15
EXIT_MISSING_TOOL = 16
EXIT_RUN_FAILED = 20
EXIT_INTERRUPTED = 130


class DrctlError(Exception):
    """Root of every error drctl reports to the user."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(DrctlError):
    """The input is invalid."""

    exit_code = EXIT_INVALID


class ToolMissing(DrctlError):
    """An external tool this command needs is not installed."""

    exit_code = EXIT_MISSING_TOOL


class Cancelled(DrctlError):
    """The operation was cancelled (Ctrl-C on the run that started it)."""

    exit_code = EXIT_INTERRUPTED


class LocalIOError(DrctlError):
    """A local file could not be read or written."""

    exit_code = EXIT_LOCAL_IO
