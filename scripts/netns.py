"""Network namespaces, one helper for the local sandbox and the NCA lab: create and remove a
namespace, its bridges, taps and veths, run a command or start a daemon inside it, and stop
whatever still runs in it.

A :class:`Netns` is a namespace by name and the :class:`~drctl.errors.DrctlError` class its failures
raise, so each user keeps the error (and exit code) its own users see: the sandbox raises
``SandboxError``, the lab ``LabError``. Naming and ownership stay with them: the sandbox's
``drsb-<run>`` with an owner file, the lab's ``drnca-<run>-<role>`` with a run directory; nothing
here touches a namespace it was not given.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drctl.errors import EXIT_RUN_FAILED, DrctlError
from drctl.processes import WaitTimedOut, process_alive, run, wait_until

log = logging.getLogger(__name__)

IP_TIMEOUT = 30.0  # seconds for one `ip` command; they take milliseconds unless the kernel is stuck
KILL_WAIT = 5.0  # seconds SIGKILLed processes get to disappear


class NamespaceError(DrctlError):
    """A network namespace could not be set up or used."""

    exit_code = EXIT_RUN_FAILED


def list_namespaces(prefix: str = "", *, error: type[DrctlError] = NamespaceError) -> list[str]:
    """The network namespaces whose name starts with ``prefix`` (all of them by default)."""
    out = run(["ip", "netns", "list"], what="listing network namespaces", timeout=IP_TIMEOUT, error=error)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.split()]
    return [n for n in names if n.startswith(prefix)]


@dataclass(frozen=True)
class Netns:
    """One network namespace, by name; its operations raise ``error`` when they fail."""

    name: str
    error: type[DrctlError] = NamespaceError

    @property
    def exec_prefix(self) -> list[str]:
        """Prepend to a command line to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def exists(self) -> bool:
        return self.name in list_namespaces(self.name, error=self.error)

    def create(self) -> None:
        """Create the namespace with its loopback up; nothing is left if that fails half-way."""
        run(
            ["ip", "netns", "add", self.name],
            what=f"creating the network namespace {self.name}",
            timeout=IP_TIMEOUT,
            error=self.error,
        )
        try:
            self.ip("link", "set", "lo", "up", what=f"bringing up lo in {self.name}")
        except BaseException:
            self.delete()
            raise

    def ip(self, *args: str, what: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n <name> args...`` (``what`` names the step in the error message)."""
        return run(
            ["ip", "-n", self.name, *args], what=what, check=check, timeout=IP_TIMEOUT, error=self.error
        )

    def add_bridge(self, bridge: str, address: str | None = None, *, what: str | None = None) -> None:
        """A bridge (no STP, ports forwarding at once) holding ``address`` (CIDR) if given, up."""
        what = what or f"creating bridge {bridge} in {self.name}"
        self.ip("link", "add", bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0", what=what)
        if address is not None:
            self.ip("addr", "add", address, "dev", bridge, what=what)
        self.ip("link", "set", bridge, "up", what=what)

    def add_tap(self, tap: str, bridge: str, *, what: str | None = None) -> None:
        """A tap device (for a QEMU NIC) attached to ``bridge``, up."""
        what = what or f"creating tap {tap} on {bridge} in {self.name}"
        self.ip("tuntap", "add", "dev", tap, "mode", "tap", what=what)
        self.ip("link", "set", tap, "master", bridge, "up", what=what)

    def delete_link(self, link: str) -> None:
        """Delete ``link`` if it is there (teardown: a missing link is not an error)."""
        self.ip("link", "del", link, what=f"deleting {link} in {self.name}", check=False)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None,
        what: str | None = None,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """:func:`drctl.processes.run` inside the namespace."""
        return run(
            [*self.exec_prefix, *argv],
            timeout=timeout,
            what=what,
            check=check,
            input=input,
            env=env,
            error=self.error,
        )

    def spawn(
        self,
        argv: Sequence[str],
        *,
        log_path: Path | None,
        env: Mapping[str, str] | None = None,
        private_run: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside, in its own session (Ctrl-C reaches drctl, which
        stops it in order). Its stdout and stderr go to ``log_path`` (None: discarded); ``env`` is
        added to drctl's environment. ``private_run``: a directory bound on ``/run`` in a private
        mount namespace, for a daemon whose pid file path is compiled in (charon)."""
        cmd = list(self.exec_prefix)
        if private_run is not None:
            private_run.mkdir(parents=True, exist_ok=True)
            cmd += [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$0" /run && exec "$@"',
                str(private_run),
            ]
        out = open(log_path, "wb") if log_path is not None else None  # noqa: SIM115 (closed below)
        try:
            return subprocess.Popen(
                [*cmd, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out if out is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **env} if env else None,
            )
        finally:
            if out is not None:
                out.close()

    def pids(self) -> list[int]:
        """The processes running inside (``ip netns pids``)."""
        out = self._ip_netns("pids", what=f"listing the processes in {self.name}", check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def _ip_netns(self, action: str, *, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(
            ["ip", "netns", action, self.name], what=what, check=check, timeout=IP_TIMEOUT, error=self.error
        )

    def kill_processes(self, grace_s: float = 5.0) -> None:
        """SIGTERM everything running inside; after ``grace_s`` (or as soon as they are gone),
        SIGKILL whatever runs there then, started meanwhile included, and wait for it to go."""
        pids = self.pids()
        if not pids:
            return
        _signal(pids, signal.SIGTERM)
        try:
            wait_until(lambda: not _any_alive(pids), grace_s, f"the processes in {self.name} to stop")
        except WaitTimedOut:
            log.info("processes in %s still running %s after SIGTERM: killing them", self.name, grace_s)
        left = self.pids()
        if not left:
            return
        _signal(left, signal.SIGKILL)
        try:
            wait_until(lambda: not _any_alive(left), KILL_WAIT, f"the processes in {self.name} to die")
        except WaitTimedOut:
            log.warning(
                "processes %s in %s survived SIGKILL", [p for p in left if process_alive(p)], self.name
            )

    def delete(self) -> None:
        """Delete the namespace (its links go with it); a missing one is not an error."""
        self._ip_netns("delete", what=f"deleting the network namespace {self.name}", check=False)

    def remove(self, grace_s: float = 5.0) -> None:
        """Stop what runs inside (:meth:`kill_processes`), then delete the namespace."""
        self.kill_processes(grace_s)
        self.delete()


def add_veth(a: Netns, a_link: str, b: Netns, b_link: str, *, what: str | None = None) -> None:
    """A veth pair: ``a_link`` in namespace ``a``, its peer ``b_link`` in ``b`` (both down)."""
    run(
        [
            "ip",
            "link",
            "add",
            a_link,
            "netns",
            a.name,
            "type",
            "veth",
            "peer",
            "name",
            b_link,
            "netns",
            b.name,
        ],
        what=what or f"linking {a.name} ({a_link}) to {b.name} ({b_link})",
        timeout=IP_TIMEOUT,
        error=a.error,
    )


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _any_alive(pids: list[int]) -> bool:
    return any(process_alive(p) for p in pids)
