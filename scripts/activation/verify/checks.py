"""Verification of a restored server: the plan's checks run with testinfra, retried until a deadline.

Each plan check (:class:`drctl.plan.model.Check`) becomes one probe on a testinfra host (``local://``, ``ssh://``, ``paramiko://``...):

=========  ======================================================================================
port       something listens on the TCP (or UDP) port, on any address unless ``host`` is given
           (``host.socket.get_listening_sockets()``; ``host.socket("tcp://IP:N").is_listening``)
service    ``host.service(name).is_running``
http       ``{url, status=200, contains?}``: status and body, with curl through ``host.run``
           (testinfra has no http module) or, with ``http_via="verifier"``, from this process
command    ``host.run(cmd).rc == 0``
file       ``host.file(path).exists`` (and ``contains`` a text if given)
=========  ======================================================================================

Failing probes are retried every ``interval`` seconds until they pass or the deadline (the server's
RTO budget) is reached. Once every critical check has passed, non-critical ones get a short grace
and are then reported, so a cosmetic check never delays the servers that wait on this one.
The server's outcome from the results (``ok``; ``warning`` when only non-critical checks failed;
``failed``) is judged by the run model's rules (:func:`drctl.runs.model.server_outcome`).

Sandbox guests are reachable only inside the run's network namespace, so this module is also a
CLI run there as a subprocess (see :func:`verify_argv`)::

    python -m drctl.activation.verify --host-url ssh://root@192.168.10.30 --checks-json '[{"port": 8080}]' \\
        --deadline 2026-02-03T21:01:00Z

It prints one JSON line ``{"outcome", "verified_at", "checks": [...]}`` and exits 0 (ok/warning)
or 20 (failed).

Size: one module over 400 lines on purpose. It is one concern, a server's checks from probe to
verdict, run either in-process or as the namespace subprocess; both paths must run exactly the
same probes and retry loop, which is why the CLI entry lives with them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from drctl.errors import EXIT_RUN_FAILED, DrctlError, InvalidInput
from drctl.plan.model import Check
from drctl.processes import run
from drctl.runs.model import CheckResult, format_ts, parse_ts, server_outcome, utc_now, verified_at

log = logging.getLogger(__name__)

DETAIL_MAX = 400


class VerificationError(DrctlError):
    """The verification itself could not run (not a failed check)."""

    exit_code = EXIT_RUN_FAILED


# --- probes: one attempt each, returning (ok, observed detail) -----------------------------------


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


def probe_port(host: Any, s: Mapping[str, Any]) -> tuple[bool, str]:
    port, proto = s["port"], s["protocol"]
    if s.get("host"):
        spec = f"{proto}://{s['host']}:{port}"
        ok = host.socket(spec).is_listening
        return ok, f"{spec} {'is listening' if ok else 'is not listening'}"
    found = []
    for sock in host.socket.get_listening_sockets():
        p, _, addr = sock.partition("://")
        if p == proto and addr.rsplit(":", 1)[-1] == str(port):
            found.append(sock)
    if found:
        return True, "listening on " + ", ".join(sorted(found))
    return False, f"nothing listens on {proto} port {port}"


def probe_service(host: Any, name: str) -> tuple[bool, str]:
    ok = host.service(name).is_running
    return ok, f"service {name} is {'running' if ok else 'not running'}"


def probe_command(host: Any, cmd: str) -> tuple[bool, str]:
    r = host.run(cmd)
    out = _clip((r.stdout or "") + (" " + r.stderr if r.stderr else ""))
    return r.rc == 0, f"exit {r.rc}" + (f": {out}" if out else "")


def probe_file(host: Any, s: Mapping[str, Any]) -> tuple[bool, str]:
    f = host.file(s["path"])
    if not f.exists:
        return False, f"{s['path']} does not exist"
    if s.get("contains") and not f.contains(s["contains"]):
        return False, f"{s['path']} exists but does not contain {s['contains']!r}"
    return True, f"{s['path']} exists" + (f" and contains {s['contains']!r}" if s.get("contains") else "")


def _judge_http(s: Mapping[str, Any], status: int | None, body: str) -> tuple[bool, str]:
    if status != s["status"]:
        return False, f"HTTP {status} (expected {s['status']}): {_clip(body[:200])}"
    if s.get("contains") and s["contains"] not in body:
        return False, f"HTTP {status} but the body lacks {s['contains']!r}: {_clip(body[:200])}"
    return True, f"HTTP {status}" + (f", body contains {s['contains']!r}" if s.get("contains") else "")


def probe_http_on_host(host: Any, s: Mapping[str, Any], timeout: float) -> tuple[bool, str]:
    marker = "\n__drctl_http_status__:"
    r = host.run(
        "curl -sS --noproxy '*' --max-time %s -w %s %s",
        str(max(1, int(timeout))),
        marker + "%{http_code}",
        s["url"],
    )
    body, _, code = (r.stdout or "").rpartition(marker)
    if r.rc != 0 and not code.strip().strip("0"):
        return False, f"curl exit {r.rc}: {_clip(r.stderr or r.stdout)}"
    return _judge_http(s, int(code.strip() or 0) or None, body)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe_http_from_verifier(s: Mapping[str, Any], timeout: float) -> tuple[bool, str]:
    try:
        with _NO_PROXY.open(s["url"], timeout=max(0.5, timeout)) as resp:
            return _judge_http(s, resp.status, resp.read(65536).decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        return _judge_http(s, e.code, e.read(65536).decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as e:
        return False, f"no HTTP answer from {s['url']}: {getattr(e, 'reason', e)}"


def probe(host: Any, c: Check, *, http_via: str = "host", timeout: float = 5.0) -> tuple[bool, str]:
    if c.kind == "port":
        return probe_port(host, c.spec)
    if c.kind == "service":
        return probe_service(host, c.spec)
    if c.kind == "command":
        return probe_command(host, c.spec)
    if c.kind == "file":
        return probe_file(host, c.spec)
    if http_via == "verifier":
        return probe_http_from_verifier(c.spec, timeout)
    return probe_http_on_host(host, c.spec, timeout)


def _fatal_errors() -> tuple[type[BaseException], ...]:
    """Errors that retrying cannot fix: a refused login is never retried."""
    import paramiko

    return (paramiko.AuthenticationException,)


def _checks(checks: Iterable[Check | Mapping[str, Any]]) -> list[Check]:
    """Plan checks, given as :class:`Check` or in the plan's form (``{"port": 80}``)."""
    return [c if isinstance(c, Check) else Check.from_dict(c) for c in checks]


# --- the retry loop -------------------------------------------------------------------------------


@dataclass
class _State:
    spec: Check
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    ok: bool = False
    detail: str = "not run"


def run_checks(
    host_url: str,
    checks: Iterable[Check | Mapping[str, Any]],
    deadline: datetime,
    *,
    interval: float = 1.0,
    noncritical_grace_s: float = 10.0,
    http_via: str = "host",
    host: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[CheckResult]:
    """Run ``checks`` against the testinfra host ``host_url`` until they all pass or ``deadline``.

    Every check is tried at least once. Results are in the order of ``checks``; a failed one's
    detail says what was last observed, how many attempts were made and that the deadline passed.
    ``host`` may be given instead of building it from ``host_url`` (a testinfra host object).
    """
    if http_via not in ("host", "verifier"):
        raise InvalidInput(f"http_via {http_via!r}: use host or verifier")
    specs = _checks(checks)
    if host is None:
        import testinfra

        try:
            host = testinfra.get_host(host_url)
        except Exception as e:  # testinfra raises plain RuntimeError/ValueError for bad URLs
            raise InvalidInput(f"testinfra host {host_url!r}: {e}") from e
    mono_deadline = time.monotonic() + (deadline - utc_now()).total_seconds()
    states = [_State(s) for s in specs]
    fatal = _fatal_errors()
    grace_end: float | None = None
    aborted: str | None = None
    t0 = time.monotonic()

    while True:
        for st in states:
            if st.ok:
                continue
            st.attempts += 1
            now = utc_now()
            st.started_at = st.started_at or now
            remaining = max(1.0, mono_deadline - time.monotonic())
            try:
                st.ok, st.detail = probe(host, st.spec, http_via=http_via, timeout=min(5.0, remaining))
            except fatal as e:
                aborted = f"cannot log in to {host_url}: {e} (not retried)"
                st.ok, st.detail = False, aborted
            except Exception as e:  # the guest may not answer yet: recorded, then retried
                st.ok, st.detail = False, _clip(f"{type(e).__name__}: {e}")
            st.ended_at = utc_now()
            log.debug("%s attempt %d: %s %s", st.spec.describe(), st.attempts, st.ok, st.detail)
            if aborted:
                break
        pending = [st for st in states if not st.ok]
        now_m = time.monotonic()
        if not pending or aborted or now_m >= mono_deadline:
            break
        if not any(st.spec.critical for st in pending):
            grace_end = (
                grace_end if grace_end is not None else min(mono_deadline, now_m + noncritical_grace_s)
            )
            if now_m >= grace_end:
                break
        end = grace_end if grace_end is not None else mono_deadline
        sleep(max(0.0, min(interval, end - now_m)))

    elapsed = time.monotonic() - t0
    results = []
    for st in states:
        detail = st.detail
        if not st.ok:
            if aborted and st.detail != aborted:
                detail = f"not run: {aborted}" if st.attempts == 0 else f"{detail}; then {aborted}"
            elif not aborted:
                why = (
                    "deadline reached"
                    if time.monotonic() >= mono_deadline
                    else "grace for non-critical checks over"
                )
                detail = f"{detail} (failed after {st.attempts} attempt(s) over {elapsed:.1f} s, {why})"
        results.append(
            CheckResult(
                check=st.spec.describe(),
                ok=st.ok,
                detail=detail,
                critical=st.spec.critical,
                attempts=st.attempts,
                started_at=st.started_at,
                ended_at=st.ended_at,
            )
        )
    return results


# --- the same checks as a pytest-testinfra module ------------------------------------------------------

_MODULE = '''"""Checks of server {server} from its recovery plan (generated by drctl; re-run with
``pytest --hosts=HOST_URL {filename}``). Non-critical checks are expected failures (xfail)."""
import json

import pytest

from drctl.activation.verify.checks import probe
from drctl.plan.model import Check

CHECKS = [Check.from_dict(c) for c in json.loads({checks_json!r})]


@pytest.mark.parametrize("check", [
    pytest.param(c, id=c.describe(),
                 marks=() if c.critical else pytest.mark.xfail(reason="non-critical", strict=False))
    for c in CHECKS
])
def test_check(host, check):
    ok, detail = probe(host, check, http_via={http_via!r})
    assert ok, detail
'''


def render_testinfra_module(
    server: str,
    checks: Iterable[Check | Mapping[str, Any]],
    *,
    http_via: str = "host",
    filename: str = "test_server.py",
) -> str:
    """A pytest-testinfra test module running ``checks`` (one test each, same probes), for an
    operator to re-run a server's verification by hand with ``pytest --hosts=...``."""
    specs = _checks(checks)
    return _MODULE.format(
        server=server,
        filename=filename,
        http_via=http_via,
        checks_json=json.dumps([s.to_plan_dict() for s in specs]),
    )


# --- running it in a namespace as a subprocess ------------------------------------------------------


def verify_argv(
    host_url: str,
    checks: Iterable[Check | Mapping[str, Any]],
    deadline: datetime,
    *,
    prefix: Sequence[str] = (),
    python: str = sys.executable,
    http_via: str = "host",
    interval: float = 1.0,
    noncritical_grace_s: float = 10.0,
) -> list[str]:
    """The command line running these checks in a subprocess, e.g. with
    ``prefix=["ip", "netns", "exec", NS]`` inside a sandbox namespace."""
    if urlsplit(host_url).password:
        raise InvalidInput(
            "the host URL carries a password, which would show in the process list: "
            "use a key (ssh_identity_file=...) instead"
        )
    specs = _checks(checks)
    return [
        *prefix,
        python,
        "-m",
        "drctl.activation.verify",
        "--host-url",
        host_url,
        "--checks-json",
        json.dumps([s.to_plan_dict() for s in specs]),
        "--deadline",
        str(format_ts(deadline)),
        "--http-via",
        http_via,
        "--interval",
        str(interval),
        "--grace",
        str(noncritical_grace_s),
    ]


def run_checks_subprocess(
    host_url: str,
    checks: Iterable[Any],
    deadline: datetime,
    *,
    prefix: Sequence[str] = (),
    margin_s: float = 60.0,
    **kwargs: Any,
) -> list[CheckResult]:
    """:func:`run_checks` in a child process (see :func:`verify_argv`); its JSON back as results."""
    argv = verify_argv(host_url, checks, deadline, prefix=prefix, **kwargs)
    budget = max(0.0, (deadline - utc_now()).total_seconds()) + margin_s
    proc = run(argv, what=f"verification of {host_url}", timeout=budget, check=False, error=VerificationError)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode not in (0, EXIT_RUN_FAILED) or not lines:
        raise VerificationError(
            f"verification of {host_url} could not run (exit {proc.returncode}): {_clip(proc.stderr)}"
        )
    try:
        doc = json.loads(lines[-1])
        return [CheckResult.from_dict(c) for c in doc["checks"]]
    except (ValueError, KeyError, TypeError) as e:  # the child's last line is not its result
        raise VerificationError(
            f"verification of {host_url} printed no result ({e}): {_clip(lines[-1])}"
        ) from e


def _deadline_arg(text: str) -> datetime:
    """An ISO-8601 time, or a number of seconds from now."""
    try:
        return utc_now() + timedelta(seconds=float(text))
    except ValueError:
        ts = parse_ts(text, "--deadline")
        assert ts is not None
        return ts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m drctl.activation.verify", description="Run plan checks with testinfra."
    )
    p.add_argument("--host-url", required=True, help="testinfra host, e.g. local:// or ssh://root@IP")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checks-json", help="plan checks as JSON, e.g. '[{\"port\": 80}]'")
    src.add_argument("--checks-file", help="file holding the plan checks as JSON")
    p.add_argument(
        "--deadline",
        required=True,
        type=_deadline_arg,
        help="ISO-8601 time (e.g. 2026-02-03T21:01:00Z) or seconds from now",
    )
    p.add_argument("--http-via", choices=("host", "verifier"), default="host")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--grace", type=float, default=10.0, help="seconds left to non-critical checks")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="drctl.activation.verify: %(levelname)s: %(message)s")
    try:
        text = args.checks_json
        if text is None:
            with open(args.checks_file, encoding="utf-8") as f:
                text = f.read()
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise InvalidInput(f"--checks-json: not valid JSON ({e})") from e
        if not isinstance(raw, list):
            raise InvalidInput("--checks-json: expected a JSON list of checks")
        results = run_checks(
            args.host_url,
            raw,
            args.deadline,
            interval=args.interval,
            noncritical_grace_s=args.grace,
            http_via=args.http_via,
        )
    except (DrctlError, OSError) as e:
        print(f"drctl.activation.verify: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 15)
    outcome = server_outcome(results)
    print(
        json.dumps(
            {
                "outcome": outcome,
                "verified_at": format_ts(verified_at(results)),
                "checks": [r.to_dict() for r in results],
            },
            ensure_ascii=False,
        )
    )
    return EXIT_RUN_FAILED if outcome == "failed" else 0
