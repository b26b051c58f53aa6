"""One run of the NCA lab: its network namespaces, daemons and run directory, and their removal.

Everything is named with the run's id (``drnca-<id>-<role>``) so a crashed run's leftovers can be
found and removed (:func:`cleanup_leftovers`), and nothing outside our own namespaces is touched.
The namespaces themselves are made with :mod:`drctl.netns`, the helper the sandbox uses too.

Two charons on one host: charon's pid file is compiled in (``/var/run/charon.pid``), so each runs
in its own mount namespace with a private directory bound on ``/run``; everything else (vici
socket, log) is set in a per-instance ``strongswan.conf`` passed through ``STRONGSWAN_CONF``.
The kernels this runs on may lack ESP (``CONFIG_INET_ESP``): charon uses the userspace data path
(``kernel-libipsec``, Debian ``libcharon-extra-plugins``) over a TUN device.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from drctl.errors import EXIT_RUN_FAILED, DrctlError, ToolMissing
from drctl.netns import Netns, list_namespaces
from drctl.processes import WaitTimedOut, process_alive, run, wait_until

log = logging.getLogger(__name__)

PREFIX = "drnca-"
CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "swanctl"
DNSMASQ = "dnsmasq"
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
_PLUGINS = (
    "random nonce aes sha1 sha2 hmac gmp kdf pem pkcs1 x509 pubkey "
    "kernel-libipsec kernel-netlink socket-default vici"
)
# ECP groups (group19-21) come from the openssl plugin (Debian libstrongswan-standard-plugins).
OPENSSL_PLUGIN = PLUGIN_DIR / "libstrongswan-openssl.so"
_STRONGSWAN_CONF = """\
charon {{
  load_modular = no
  load = {plugins}
  install_virtual_ip = no
  retransmit_tries = 2
  retransmit_timeout = 1.0
  filelog {{
    lab {{
      path = {log}
      time_format = %H:%M:%S
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{vici}
    }}
  }}
}}
swanctl {{
  load = random nonce pem pkcs1 x509 pubkey
}}
"""


class LabError(DrctlError):
    """A step of the NCA lab failed."""

    exit_code = EXIT_RUN_FAILED


class LabUnavailable(ToolMissing):
    """The NCA lab cannot run on this machine."""


COMMAND_TIMEOUT = 30.0  # seconds for one swanctl/dnsmasq/ip command of the lab
STRAY_GRACE = 0.5  # seconds processes left in a namespace at teardown get between SIGTERM and SIGKILL


@dataclass(frozen=True)
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


def require_tools(*, ecp: bool = False) -> None:
    """Root and the Debian packages the lab runs (exit 16 naming what to install); ``ecp``: a
    proposal uses an elliptic-curve group."""
    if os.geteuid() != 0:
        raise LabUnavailable("drctl nca test creates network namespaces: run it as root")
    missing = []
    if not Path(CHARON).exists():
        missing.append("strongswan-charon")
    if not (PLUGIN_DIR / "libstrongswan-kernel-libipsec.so").exists():
        missing.append("libcharon-extra-plugins")
    if ecp and not OPENSSL_PLUGIN.exists():
        missing.append("libstrongswan-standard-plugins")
    for tool, pkg in ((SWANCTL, "strongswan-swanctl"), (DNSMASQ, "dnsmasq-base"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            missing.append(pkg)
    if missing:
        raise LabUnavailable(
            "the NCA lab needs the Debian packages: "
            + " ".join(missing)
            + f" (apt-get install --no-install-recommends {' '.join(missing)})"
        )


def lab_netns(name: str) -> Netns:
    """A namespace whose failures are lab failures (:class:`LabError`, exit 20)."""
    return Netns(name, LabError)


class Namespaces:
    """The namespaces, veths and daemons of one run, and their removal (idempotent)."""

    def __init__(self, run_id: str, run_dir: Path) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.created: list[Netns] = []
        self.foreign_links: list[tuple[Netns, str]] = []  # (namespace, link) made in one we do not own
        self.processes: list[Process] = []

    def name(self, role: str) -> str:
        return f"{PREFIX}{self.run_id}-{role}"

    def add(self, role: str) -> Netns:
        ns = lab_netns(self.name(role))
        ns.create()
        self.created.append(ns)
        return ns

    def start(
        self,
        name: str,
        ns: Netns,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        private_run: Path | None = None,
    ) -> Process:
        """Start a daemon inside ``ns`` (optionally with ``private_run`` bound on /run)."""
        log_path = self.run_dir / f"{name}.out"
        popen = ns.spawn(argv, log_path=log_path, env=env, private_run=private_run)
        proc = Process(name=name, popen=popen, log_path=log_path)
        self.processes.append(proc)
        return proc

    def stop_processes(self) -> None:
        for proc in reversed(self.processes):
            if proc.popen.poll() is None:
                proc.popen.terminate()
        try:  # one budget for all of them: they were told together
            wait_until(
                lambda: all(p.popen.poll() is not None for p in self.processes),
                5,
                f"the daemons of lab run {self.run_id} to stop",
            )
        except WaitTimedOut:
            for proc in self.processes:
                if proc.popen.poll() is None:
                    log.info("%s did not stop on SIGTERM in time: killing it", proc.name)
                    try:
                        os.killpg(proc.popen.pid, 9)
                    except ProcessLookupError:
                        pass
                    proc.popen.wait(timeout=5)
        self.processes.clear()

    def teardown(self) -> None:
        """Stop our daemons, then delete our links and namespaces."""
        try:
            self.stop_processes()
        except Exception as e:  # teardown must go on: report and continue
            log.error("stopping the lab's processes failed: %s", e, exc_info=True)
        for ns, link in self.foreign_links:
            ns.delete_link(link)
        self.foreign_links.clear()
        for ns in reversed(self.created):
            ns.remove(grace_s=STRAY_GRACE)
        self.created.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def new_run(root: Path | None = None) -> tuple[str, Path]:
    """A fresh run id and its private directory (0700); records our pid for leftover cleanup."""
    run_id = secrets.token_hex(3)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{run_id}-", dir=root))
    (run_dir / "owner.pid").write_text(str(os.getpid()))
    return run_id, run_dir


def cleanup_leftovers(*, all_runs: bool = False, root: Path | None = None) -> list[str]:
    """Remove namespaces and run directories of crashed runs (owner process gone).

    With ``all_runs`` every ``drnca-*`` namespace goes, running or not (``drctl nca test --cleanup``).
    Returns the namespaces removed."""
    tmp = Path(root or tempfile.gettempdir())
    owners: dict[str, int] = {}
    dirs: dict[str, Path] = {}
    for d in tmp.glob(f"{PREFIX}*"):
        run_id = d.name[len(PREFIX) :].split("-")[0]
        dirs[run_id] = d
        try:
            owners[run_id] = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            owners[run_id] = -1
    removed = []
    for ns in list_namespaces(PREFIX, error=LabError):
        run_id = ns[len(PREFIX) :].split("-")[0]
        if run_id not in owners and not all_runs:
            continue  # not a run of this directory: never guess about someone else's namespace
        owner = owners.get(run_id, -1)
        if all_runs or owner <= 0 or not process_alive(owner):
            lab_netns(ns).remove(grace_s=STRAY_GRACE)
            removed.append(ns)
    for run_id, d in dirs.items():
        owner = owners.get(run_id, -1)
        if all_runs or owner <= 0 or not process_alive(owner):
            shutil.rmtree(d, ignore_errors=True)
    return removed


def strongswan_conf(directory: Path) -> Path:
    """Write a per-instance strongswan.conf (its log and vici socket in ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "strongswan.conf"
    plugins = _PLUGINS + (" openssl" if OPENSSL_PLUGIN.exists() else "")
    path.write_text(
        _STRONGSWAN_CONF.format(plugins=plugins, log=directory / "charon.log", vici=directory / "charon.vici")
    )
    return path


def wait_for_charon(proc: Process, vici: Path, what: str) -> None:
    """Wait until charon opened its control socket ``vici``; :class:`LabError` with its log if it
    exited or did not within 10 s."""
    try:
        wait_until(
            lambda: vici.exists() or proc.popen.poll() is not None,
            10,
            f"{what} to open its control socket",
            interval=0.05,
        )
    except WaitTimedOut as e:
        raise LabError(f"{e.message}: {read_log(proc.log_path)[-400:]}") from e
    if not vici.exists():
        raise LabError(f"{what} exited: {read_log(proc.log_path)[-500:]}")


def probe(ns: Netns, *args: str, timeout: float = 20) -> tuple[bool, dict]:
    """Run one :mod:`drctl.nca.probe` action inside ``ns``; (answered, result)."""
    proc = ns.run([sys.executable, "-m", "drctl.nca.probe", *args], check=False, timeout=timeout)
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        out = {"error": (proc.stderr or proc.stdout).strip()[-500:]}
    return proc.returncode == 0 and "error" not in out, out


def check_swanctl_conf(text: str) -> str:
    """strongSwan's own parsing of a ``swanctl.conf``: load it into a throwaway charon in a
    throwaway namespace and return ``swanctl --list-conns``. Raises :class:`LabError` with
    swanctl's complaint when charon refuses it."""
    require_tools()
    run_id, run_dir = new_run()
    ns = Namespaces(run_id, run_dir)
    try:
        parse = ns.add("parse")
        conf = strongswan_conf(run_dir / "charon")
        (run_dir / "charon" / "swanctl.conf").write_text(text)
        env = {"STRONGSWAN_CONF": str(conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        proc = ns.start("charon-parse", parse, [CHARON], env=env, private_run=run_dir / "charon" / "run")
        vici = run_dir / "charon" / "charon.vici"
        wait_for_charon(proc, vici, "charon")
        uri = f"unix://{vici}"
        load = swanctl(
            ["--load-all", "--noprompt", "--file", str(run_dir / "charon" / "swanctl.conf")], uri, env
        )
        if load.returncode != 0 or "successfully loaded" not in load.stdout:
            said = [
                line
                for line in (load.stdout + load.stderr).splitlines()
                if line.strip() and not line.startswith("opening directory")
            ]
            raise LabError("strongSwan refuses this swanctl.conf: " + " | ".join(said)[-600:])
        return swanctl(["--list-conns"], uri, env, check=True).stdout
    finally:
        ns.teardown()


def swanctl(
    args: list[str], uri: str, env: dict[str, str], *, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """``swanctl args --uri uri`` against one lab charon (its environment names its config)."""
    return run(
        [SWANCTL, *args, "--uri", uri],
        what=f"swanctl {args[0]}",
        env=env,
        check=check,
        timeout=COMMAND_TIMEOUT,
        error=LabError,
    )


def read_log(path: Path) -> str:
    """A log file's text, empty if it cannot be read (for error messages)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
