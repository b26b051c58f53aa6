"""Network namespaces and daemons for the NCA lab: creation, processes, and teardown.

Everything here is named with the run's id (``drnca-<id>-<role>``) so a crashed run's leftovers can
be found and removed (:func:`cleanup_leftovers`), and nothing outside our own namespaces is touched.

Two charons on one host: charon's pid file is compiled in (``/var/run/charon.pid``), so each runs
in its own mount namespace with a private directory bound on ``/run``; everything else (vici
socket, log) is set in a per-instance ``strongswan.conf`` passed through ``STRONGSWAN_CONF``.
The kernels this runs on may lack ESP (``CONFIG_INET_ESP``): charon uses the userspace data path
(``kernel-libipsec``, Debian ``libcharon-extra-plugins``) over a TUN device.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from drctl.errors import DrctlError, ToolMissing
from drctl.processes import process_alive

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

    exit_code = 20


class LabUnavailable(ToolMissing):
    """The NCA lab cannot run on this machine."""


@dataclass(frozen=True)
class Process:
    name: str
    popen: subprocess.Popen
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


def run(
    cmd: list[str], *, check: bool = True, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command, raising :class:`LabError` with its stderr when it fails."""
    log.debug("run: %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"`{' '.join(cmd[:4])} ...` did not finish within {timeout:.0f}s") from e
    if check and proc.returncode != 0:
        raise LabError(
            f"`{' '.join(cmd)}` failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[:500]}"
        )
    return proc


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


class Namespaces:
    """The namespaces, veths and daemons of one run, and their removal (idempotent)."""

    def __init__(self, run_id: str, run_dir: Path) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.created: list[str] = []
        self.foreign_links: list[tuple[str, str]] = []  # (namespace, link) made in a namespace we do not own
        self.processes: list[Process] = []

    def name(self, role: str) -> str:
        return f"{PREFIX}{self.run_id}-{role}"

    def add(self, role: str) -> str:
        ns = self.name(role)
        run(["ip", "netns", "add", ns])
        self.created.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def start(
        self,
        name: str,
        ns: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        private_run: Path | None = None,
    ) -> Process:
        """Start a daemon inside ``ns`` (optionally with ``private_run`` bound on /run)."""
        log_path = self.run_dir / f"{name}.out"
        cmd = ["ip", "netns", "exec", ns]
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
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(
                cmd + argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        proc = Process(name=name, popen=popen, log_path=log_path)
        self.processes.append(proc)
        return proc

    def stop_processes(self) -> None:
        for proc in reversed(self.processes):
            if proc.popen.poll() is None:
                proc.popen.terminate()
        deadline = time.monotonic() + 5
        for proc in self.processes:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.info("%s did not stop on SIGTERM in time: killing it", proc.name)
                try:
                    os.killpg(proc.popen.pid, 9)
                except ProcessLookupError:
                    pass
                proc.popen.wait(timeout=5)
        self.processes.clear()

    def teardown(self) -> None:
        """Stop our daemons, then delete our links and namespaces; never raises."""
        try:
            self.stop_processes()
        except Exception as e:  # teardown must go on: report and continue
            log.error("stopping the lab's processes failed: %s", e)
        for ns, link in self.foreign_links:
            run(["ip", "-n", ns, "link", "del", link], check=False)
        self.foreign_links.clear()
        for ns in reversed(self.created):
            kill_namespace_processes(ns)
            run(["ip", "netns", "del", ns], check=False)
        self.created.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def kill_namespace_processes(ns: str) -> None:
    """Kill what still runs inside one of our namespaces (after SIGTERM had its chance)."""
    pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for sig in (15, 9):
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except (ProcessLookupError, ValueError):
                pass
        if sig == 15 and pids:
            time.sleep(0.5)
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()


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
    for ns in netns_list():
        if not ns.startswith(PREFIX):
            continue
        run_id = ns[len(PREFIX) :].split("-")[0]
        if run_id not in owners and not all_runs:
            continue  # not a run of this directory: never guess about someone else's namespace
        owner = owners.get(run_id, -1)
        if all_runs or owner <= 0 or not process_alive(owner):
            kill_namespace_processes(ns)
            run(["ip", "netns", "del", ns], check=False)
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


def probe(ns: str, *args: str, timeout: float = 20) -> tuple[bool, dict]:
    """Run one :mod:`drctl.nca.probe` action inside ``ns``; (answered, result)."""
    import json

    proc = run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "drctl.nca.probe", *args],
        check=False,
        timeout=timeout,
    )
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
        name = ns.add("parse")
        conf = strongswan_conf(run_dir / "charon")
        (run_dir / "charon" / "swanctl.conf").write_text(text)
        env = {"STRONGSWAN_CONF": str(conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        proc = ns.start("charon-parse", name, [CHARON], env=env, private_run=run_dir / "charon" / "run")
        vici = run_dir / "charon" / "charon.vici"
        deadline = time.monotonic() + 10
        while not vici.exists():
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"charon did not start: {proc.log_path.read_text(errors='replace')[-400:]}")
            time.sleep(0.05)
        uri = f"unix://{vici}"
        load = run(
            [
                SWANCTL,
                "--load-all",
                "--noprompt",
                "--file",
                str(run_dir / "charon" / "swanctl.conf"),
                "--uri",
                uri,
            ],
            env=env,
            check=False,
        )
        if load.returncode != 0 or "successfully loaded" not in load.stdout:
            said = [
                line
                for line in (load.stdout + load.stderr).splitlines()
                if line.strip() and not line.startswith("opening directory")
            ]
            raise LabError("strongSwan refuses this swanctl.conf: " + " | ".join(said)[-600:])
        return run([SWANCTL, "--list-conns", "--uri", uri], env=env).stdout
    finally:
        ns.teardown()
