"""The local target's sandbox: restored disks booted with QEMU inside a network namespace of the run.

One namespace ``drsb-<run_id>`` per run holds a bridge per plan subnet that hosts servers; the
bridge carries the subnet's gateway address, so the namespace itself (where the verification runs)
reaches the guests on their production IPs. Each NIC of a guest is a tap on its subnet's bridge.
The namespace has no uplink, no veth, no NAT and forwarding off: nothing leaves it. Namespace,
bridges, taps and the processes inside are made and removed with :mod:`drctl.netns` (as the NCA
lab's are).

Guests boot from a qcow2 overlay on the restored raw disk (the restored file stays as restored),
with QEMU's software emulator (``-accel tcg``: the host's nested KVM hangs stock kernels), the
plan's RAM and vCPUs capped by the options, the console on a serial log file. Each guest's disks
are the drives ``vda``, ``vdb``... (boot disk first), and each guest has a QMP monitor socket and a
guest agent (QGA) virtio-serial channel, ``<server>.qmp`` and ``<server>.qga`` in
:func:`socket_dir` (0700, short enough for a Unix socket path): what the agent's ``qemu`` method
(:mod:`drctl.agent.qemu`) drives.

Everything is torn down by :meth:`Sandbox.teardown` (idempotent), which the context manager calls
on every exit path, Ctrl-C and SIGTERM included; :func:`cleanup_stale` removes what a killed run
left behind. Usage::

    with Sandbox(run_id, plan, state_dir=state) as sb:
        guest = sb.start_server(plan.server("dns01"), restored_raw)
        sb.wait_ssh(guest, timeout_s=300)
        sb.exec([sys.executable, "-m", "drctl.activation.verify", "--host-url", sb.ssh_url(guest.server), ...])

:func:`running_guest_disks` finds, for a stack's active run kept running (an activation), each
running guest's drives, their images and its QMP/QGA sockets, as QEMU itself reports them: what
``drctl protect`` backs up while a disaster activation runs.

Size: one module over 400 lines on purpose. The namespace, bridges, taps, overlays and QEMU
processes share one lifecycle: :class:`Sandbox` creates each of them and its teardown removes each
on every exit path; splitting them apart would separate a resource from the code that guarantees
its removal. The lookup of a kept run's running guests reads the same layout (socket directory,
overlays over ``<server>-<disk>.raw``) that this class creates, so it lives beside it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drctl.errors import EXIT_RUN_FAILED, DrctlError, InvalidInput, ToolMissing
from drctl.netns import Netns, list_namespaces
from drctl.plan.model import Plan, Server
from drctl.processes import WaitTimedOut, run, sigterm_as_interrupt, wait_until

log = logging.getLogger(__name__)

NS_PREFIX = "drsb-"
OWNER_DIR = Path("/run/drctl-sandbox")  # <namespace>.owner: "pid starttime" of the run owning it
QEMU = "qemu-system-x86_64"
PROBE_MARGIN_S = 60.0  # beyond its own budget, for the probe's last attempt and a slow Python start
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$")

# Runs inside the namespace: wait until something answers with an SSH banner on ip:port. (One
# process for the whole wait: a Python start per attempt is too slow on a busy 2-core host.)
_PROBE = r"""
import socket, sys, time
ip, port, end = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        with socket.create_connection((ip, port), timeout=2) as s:
            s.settimeout(5)
            if s.recv(16).startswith(b"SSH-"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(1)
"""


class SandboxError(DrctlError):
    """The local sandbox could not be set up or a guest did not come up."""

    exit_code = EXIT_RUN_FAILED


class GuestFailed(SandboxError):
    """A guest's QEMU process exited or its SSH server never answered."""


def socket_dir(namespace: str) -> Path:
    """Where a run's QMP and QGA sockets live: under /run, named by a hash of the namespace so that
    ``<dir>/<server>.qmp`` stays under the 107 bytes of a Unix socket path for any server name."""
    return OWNER_DIR / hashlib.sha256(namespace.encode()).hexdigest()[:12]


def guest_mac(server: str, index: int) -> str:
    """A stable MAC for NIC ``index`` of ``server`` (QEMU's 52:54:00 prefix). The demo images'
    network configuration matches on it (:mod:`drctl.demo.images`)."""
    h = hashlib.sha256(f"{server}/{index}".encode()).digest()
    return f"52:54:00:{h[0]:02x}:{h[1]:02x}:{h[2]:02x}"


@dataclass
class Guest:
    """One booted server: its QEMU process and what the run report records."""

    server: str
    ips: tuple[str, ...]
    process: subprocess.Popen
    disk: Path
    serial_log: Path
    taps: tuple[str, ...]
    ram_mb: int
    vcpus: int
    boot_started_at: datetime
    qmp_socket: Path | None = None
    qga_socket: Path | None = None
    drives: tuple[str, ...] = ()  # QEMU drive ids, in disk order (boot disk first)
    ssh_ready_at: datetime | None = None
    _mono_start: float = field(default_factory=time.monotonic, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def serial_tail(self, lines: int = 15) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def cleanup_stale(prefix: str = NS_PREFIX, *, state_dir: Path | None = None) -> list[str]:
    """Remove the namespaces (and their QEMU processes, taps, bridges) of runs whose owner process
    is gone; with ``state_dir``, also their overlays. Live runs are left alone. Returns the names."""
    removed = []
    for ns in list_namespaces(prefix, error=SandboxError):
        owner = OWNER_DIR / f"{ns}.owner"
        try:
            pid_s, start = owner.read_text().split()
            if _proc_start(int(pid_s)) == start:
                continue  # its run is alive
        except (OSError, ValueError):
            pass
        log.warning("removing the leftover sandbox namespace %s", ns)
        Netns(ns, SandboxError).remove()
        owner.unlink(missing_ok=True)
        shutil.rmtree(socket_dir(ns), ignore_errors=True)
        if state_dir is not None:
            shutil.rmtree(Path(state_dir) / "sandbox" / ns.removeprefix(NS_PREFIX), ignore_errors=True)
        removed.append(ns)
    return removed


class Sandbox:
    """The network namespace of one run and the guests booted in it."""

    def __init__(
        self,
        run_id: str,
        plan: Plan,
        *,
        state_dir: Path,
        ram_cap_mb: int | None = None,
        vcpu_cap: int | None = None,
        ssh_identity_file: Path | None = None,
        qemu: str = QEMU,
    ) -> None:
        if not _RUN_ID.match(run_id):
            raise InvalidInput(f"run id {run_id!r} cannot name a namespace (letters, digits, . _ -; max 61)")
        self.run_id, self.plan = run_id, plan
        self.namespace = NS_PREFIX + run_id
        self.netns = Netns(self.namespace, SandboxError)
        self.state_dir = Path(state_dir).resolve()
        self.run_dir = self.state_dir / "sandbox" / run_id
        self.socket_dir = socket_dir(self.namespace)
        self.ram_cap_mb, self.vcpu_cap, self.qemu = ram_cap_mb, vcpu_cap, qemu
        self.ssh_identity_file = Path(ssh_identity_file or self.state_dir / "images" / "ssh" / "id_ed25519")
        self.guests: dict[str, Guest] = {}
        self.bridges: dict[str, str] = {}  # subnet ref -> bridge name
        self._taps = 0
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()  # a guest start and the teardown never interleave
        self._closing = False
        self._created = False
        self._old_sigterm: Any = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, sigterm_as_interrupt)
        try:
            self.setup()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.teardown()
        finally:
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None

    @property
    def prefix(self) -> list[str]:
        """Prepend to a command line to run it inside the namespace."""
        return self.netns.exec_prefix

    def setup(self) -> None:
        """Create the namespace, with one bridge per subnet hosting servers (holding its gateway)."""
        for tool, pkg in (("ip", "iproute2"), (self.qemu, "qemu-system-x86"), ("qemu-img", "qemu-utils")):
            if shutil.which(tool) is None:
                raise ToolMissing(f"{tool} is not installed: apt-get install --no-install-recommends {pkg}")
        if self.netns.exists():
            raise SandboxError(
                f"network namespace {self.namespace} already exists: another run uses this id, "
                "or a crashed one left it (drctl.activation.targets.sandbox.cleanup_stale removes leftovers)"
            )
        OWNER_DIR.mkdir(parents=True, exist_ok=True)
        (OWNER_DIR / f"{self.namespace}.owner").write_text(f"{os.getpid()} {_proc_start(os.getpid())}\n")
        self.netns.create()
        self._created = True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        hosted = {nic.subnet for s in self.plan.servers for nic in s.nics}
        for subnet in self.plan.subnets:
            if subnet.ref not in hosted:
                continue
            br = f"br{len(self.bridges)}"
            prefix = ipaddress.ip_network(subnet.cidr, strict=False).prefixlen
            self.netns.add_bridge(
                br, f"{subnet.gateway}/{prefix}", what=f"creating the bridge of {subnet.ref}"
            )
            self.bridges[subnet.ref] = br
        log.info("sandbox %s: namespace ready with bridges %s", self.namespace, self.bridges)

    def teardown(self) -> None:
        """Stop every guest (SIGTERM, then SIGKILL), delete taps, bridges, the namespace and the
        overlays. Safe to call twice; Ctrl-C and SIGTERM are held off until it is done."""
        main = threading.current_thread() is threading.main_thread()
        if main:
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._teardown()
        finally:
            if main:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _teardown(self) -> None:
        # A start in flight (another thread) finishes registering its guest first, and none begins
        # afterwards: else a QEMU launched after the kill below would outlive the run.
        with self._start_lock:
            self._closing = True
        with self._lock:
            guests = list(self.guests.values())
        for g in guests:
            if g.running():
                g.process.terminate()
        for g in guests:
            try:
                g.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                g.process.kill()
                g.process.wait(timeout=10)
        if self._created or self.netns.exists():
            self.netns.kill_processes()  # anything else started in it
            for g in guests:
                for tap in g.taps:
                    self.netns.delete_link(tap)
            for br in self.bridges.values():
                self.netns.delete_link(br)
            self.netns.delete()
        self._created = False
        (OWNER_DIR / f"{self.namespace}.owner").unlink(missing_ok=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        for g in guests:
            if g.disk.parent == self.run_dir:
                g.disk.unlink(missing_ok=True)
        for leftover in self.run_dir.glob("*.qcow2"):
            leftover.unlink(missing_ok=True)
        if guests:
            log.info("sandbox %s: torn down (%d guests)", self.namespace, len(guests))

    # --- guests ------------------------------------------------------------------------------------

    def ram_mb(self, server: Server) -> int:
        return min(server.ram_mb, self.ram_cap_mb) if self.ram_cap_mb else server.ram_mb

    def vcpus(self, server: Server) -> int:
        return min(server.vcpus, self.vcpu_cap) if self.vcpu_cap else server.vcpus

    def start_server(
        self,
        server: Server,
        disk_path: Path,
        *,
        disk_format: str = "raw",
        overlay: bool = True,
        data_disks: Sequence[tuple[str, Path]] = (),
    ) -> Guest:
        """Boot ``server`` from ``disk_path`` (its boot disk), one tap per NIC on its subnet's bridge.
        ``data_disks`` (name, restored raw file) follow as vdb, vdc... in that order. With
        ``overlay`` (default) the guest writes to qcow2 overlays in the run directory."""
        with self._start_lock:
            if self._closing:
                raise SandboxError(f"sandbox {self.namespace} is being torn down: {server.name} not started")
            return self._start_server(server, disk_path, disk_format, overlay, data_disks)

    def _start_server(
        self,
        server: Server,
        disk_path: Path,
        disk_format: str,
        overlay: bool,
        data_disks: Sequence[tuple[str, Path]],
    ) -> Guest:
        if not self._created:
            raise SandboxError(
                f"sandbox {self.namespace} is not set up (call setup() or use it as a context manager)"
            )
        if server.name in self.guests:
            raise SandboxError(f"server {server.name} is already running in sandbox {self.namespace}")
        drives = [self._drive(server, None, disk_path, disk_format, overlay)]
        drives += [self._drive(server, name, path, "raw", overlay) for name, path in data_disks]
        drive = drives[0][0]
        taps, netargs = [], []
        for i, nic in enumerate(server.nics):
            bridge = self.bridges.get(nic.subnet)
            if bridge is None:
                raise SandboxError(
                    f"server {server.name}: subnet {nic.subnet} has no bridge in {self.namespace}"
                )
            with self._lock:
                tap = f"tap{self._taps}"
                self._taps += 1
            self.netns.add_tap(tap, bridge, what=f"creating a tap for {server.name}")
            taps.append(tap)
            netargs += [
                "-netdev",
                f"tap,id=n{i},ifname={tap},script=no,downscript=no",
                "-device",
                f"virtio-net-pci,netdev=n{i},mac={guest_mac(server.name, i)}",
            ]
        serial = self.run_dir / f"{server.name}.serial.log"
        qmp, qga = self.socket_dir / f"{server.name}.qmp", self.socket_dir / f"{server.name}.qga"
        drive_ids = tuple(f"vd{chr(ord('a') + i)}" for i in range(len(drives)))
        ram, vcpus = self.ram_mb(server), self.vcpus(server)
        argv = [
            self.qemu,
            "-name",
            f"{server.name},process=drsb-{server.name}",
            "-accel",
            "tcg,tb-size=64",
            "-m",
            str(ram),
            "-smp",
            str(vcpus),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            # cache=unsafe: the overlay is thrown away at teardown, flushes would only slow the boot
            *(
                arg
                for (path, fmt), drive_id in zip(drives, drive_ids, strict=True)
                for arg in (
                    "-drive",
                    f"file={path},if=virtio,format={fmt},id={drive_id},"
                    f"cache={'unsafe' if overlay else 'writeback'}",
                )
            ),
            *netargs,
            "-serial",
            f"file:{serial}",
            "-qmp",
            f"unix:{qmp},server=on,wait=off",
            # The guest agent's channel: the name the qemu-guest-agent package's udev rule looks for.
            *("-chardev", f"socket,path={qga},server=on,wait=off,id=qga0"),
            *("-device", "virtio-serial-pci"),
            *("-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"),
        ]
        started = datetime.now(UTC)
        # Its own session: Ctrl-C reaches us, not QEMU; we stop it in order.
        proc = self.netns.spawn(argv, log_path=self.run_dir / f"{server.name}.qemu.log")
        guest = Guest(
            server=server.name,
            ips=tuple(n.ip for n in server.nics),
            process=proc,
            disk=drive,
            serial_log=serial,
            taps=tuple(taps),
            ram_mb=ram,
            vcpus=vcpus,
            boot_started_at=started,
            qmp_socket=qmp,
            qga_socket=qga,
            drives=drive_ids,
        )
        with self._lock:
            self.guests[server.name] = guest
        log.info(
            "sandbox %s: %s booting (%d MB, %d vCPU, pid %d)",
            self.namespace,
            server.name,
            ram,
            vcpus,
            proc.pid,
        )
        return guest

    def _drive(
        self, server: Server, disk: str | None, path: Path, fmt: str, overlay: bool
    ) -> tuple[Path, str]:
        """(file QEMU opens, its format): the restored disk itself, or a qcow2 overlay on it."""
        path = Path(path).resolve()
        what = f"disk {disk} of {server.name}" if disk else f"disk of {server.name}"
        if not (path.is_file() or path.is_block_device()):
            raise SandboxError(f"{what} not found: {path}")
        if not overlay:
            return path, fmt
        drive = self.run_dir / (f"{server.name}-{disk}.qcow2" if disk else f"{server.name}.qcow2")
        run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(path), str(drive)],
            what=f"creating the overlay of the {what}",
            timeout=60,
            error=SandboxError,
        )
        return drive, "qcow2"

    def wait_ssh(
        self, guest: Guest, deadline: datetime | None = None, *, timeout_s: float | None = None
    ) -> datetime:
        """Wait until the guest's SSH server answers on its first IP; returns when it did (UTC).
        Raises :class:`GuestFailed` if QEMU exits or the deadline passes (with the console's tail)."""
        if deadline is not None:
            timeout_s = (deadline - datetime.now(UTC)).total_seconds()
        timeout_s = max(1.0, timeout_s if timeout_s is not None else 300.0)
        no_answer = (
            f"server {guest.server}: no SSH answer on {guest.ips[0]}:22 within {timeout_s:.0f} s; "
            f"console ({guest.serial_log}):\n"
        )
        probe = self.netns.spawn(
            [sys.executable, "-c", _PROBE, guest.ips[0], "22", str(timeout_s)], log_path=None
        )

        def probe_done() -> bool:
            if probe.poll() is not None:
                return True
            if not guest.running():
                raise GuestFailed(
                    f"server {guest.server}: QEMU exited with {guest.process.returncode} while "
                    f"booting; console ({guest.serial_log}):\n{guest.serial_tail()}"
                )
            return False

        try:
            wait_until(
                probe_done, timeout_s + PROBE_MARGIN_S, f"the SSH probe of {guest.server}", interval=0.2
            )
        except WaitTimedOut as e:
            raise GuestFailed(no_answer + guest.serial_tail()) from e
        finally:
            if probe.poll() is None:
                probe.kill()
                probe.wait()
        if probe.returncode != 0:
            raise GuestFailed(no_answer + guest.serial_tail())
        guest.ssh_ready_at = datetime.now(UTC)
        log.info(
            "sandbox %s: %s answers SSH after %.1f s",
            self.namespace,
            guest.server,
            time.monotonic() - guest._mono_start,
        )
        return guest.ssh_ready_at

    def ssh_url(self, server: Server | str, *, backend: str = "paramiko") -> str:
        """testinfra host URL of the server, usable from inside the namespace."""
        name = server if isinstance(server, str) else server.name
        ip = self.plan.server(name).nics[0].ip
        return f"{backend}://root@{ip}?ssh_identity_file={self.ssh_identity_file}"

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (text output captured); with ``check`` a failure, and
        always a timeout, raises :class:`SandboxError`."""
        return self.netns.run(argv, input=input, timeout=timeout, check=check)


# --- the running guests of a stack's active run ------------------------------------------------------


class NoActiveRun(InvalidInput):
    """The stack has no active run (activation record) whose guests could be reached."""


@dataclass(frozen=True)
class GuestDisk:
    """One disk of a guest running in a kept sandbox, as its QEMU reports it now (what the agent's
    ``qemu`` method, ``drctl protect`` and ``drctl failback`` drive)."""

    server: str
    disk: str  # the plan's disk name
    drive: str  # QEMU drive id (vda, vdb... boot disk first)
    image: Path  # the file the guest writes to now (its overlay in the run directory)
    image_format: str
    restored: Path  # the restored raw file at the bottom of its chain
    qmp_socket: Path
    qga_socket: Path


def active_run_record(state_dir: Path, stack: str) -> dict[str, Any]:
    """The activation record ``<state>/active/<stack>.json`` of the stack's active run."""
    path = Path(state_dir) / "active" / f"{stack}.json"
    try:
        active = json.loads(path.read_text())
        if not isinstance(active, dict) or "run_id" not in active or "target" not in active:
            raise ValueError("not an activation record (run_id, target)")
    except FileNotFoundError:
        raise NoActiveRun(
            f"stack {stack} has no active run (no activation record {path}); activate it first "
            f"(`drctl activate {stack} --mode disaster ...`)"
        ) from None
    except (OSError, ValueError) as e:
        raise NoActiveRun(f"the activation record {path} of stack {stack} is unreadable: {e}") from e
    return active


def running_guest_disks(state_dir: Path, stack: str) -> dict[str, list[GuestDisk]]:
    """The disks and QMP/QGA sockets of every guest of ``stack``'s active local run whose QEMU
    answers, by server name, disks in drive order (boot disk first). A guest whose monitor does not
    answer (stopped, crashed) is left out and logged. Each drive's image chain is read from QEMU
    itself (``query-block``): its disk name comes from the restored file under the overlay
    (``<server>-<disk>.raw``)."""
    from drctl.agent.qmp import QemuControlError, Qmp

    active = active_run_record(state_dir, stack)
    if active["target"] != "local":
        raise NoActiveRun(
            f"stack {stack}'s active run {active['run_id']} runs on the {active['target']} target, "
            "not in the local sandbox"
        )
    sockets = socket_dir(NS_PREFIX + str(active["run_id"]))
    out: dict[str, list[GuestDisk]] = {}
    for qmp_path in sorted(sockets.glob("*.qmp")):
        server = qmp_path.stem
        try:
            with Qmp(qmp_path, timeout=10) as qmp:
                blocks = qmp.command("query-block")
        except QemuControlError as e:
            log.warning(
                "server %s of run %s does not answer on %s: %s", server, active["run_id"], qmp_path, e
            )
            continue
        disks = []
        for blk in blocks:
            ins = blk.get("inserted")
            if not ins:
                continue
            files = []
            image = ins.get("image") or {}
            while image:
                files.append(Path(image.get("filename", "")))
                image = image.get("backing-image") or {}
            restored = next(
                (f for f in files if f.name.startswith(f"{server}-") and f.suffix == ".raw"), None
            )
            if restored is None:
                raise SandboxError(
                    f"drive {blk.get('device')} of server {server} (run {active['run_id']}) has no restored "
                    f"disk <server>-<disk>.raw in its image chain ({', '.join(map(str, files))})"
                )
            disks.append(
                GuestDisk(
                    server=server,
                    disk=restored.stem.removeprefix(f"{server}-"),
                    drive=str(blk.get("device")),
                    image=Path(ins["file"]),
                    image_format=str((ins.get("image") or {}).get("format", "")),
                    restored=restored,
                    qmp_socket=qmp_path,
                    qga_socket=qmp_path.with_suffix(".qga"),
                )
            )
        out[server] = sorted(disks, key=lambda d: d.drive)
    return out
