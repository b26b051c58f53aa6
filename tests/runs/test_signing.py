"""Report signatures: round trip, every byte flipped is caught (exit 13, file named), key handling."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drctl.runs import signing as report_signing
from drctl.runs.report import render_html
from drctl.runs.signing import ReportFiles, ReportTampered, sign, verify
from drctl.runs.store import RunStore
from tests.runs.fixtures import demo_summary
from tests.support.events import error_of


@pytest.fixture(scope="module")
def signed():
    key = Ed25519PrivateKey.generate()
    summary = demo_summary().canonical_bytes()
    html = render_html(demo_summary()).encode()
    return key, summary, html, sign(summary, html, key)


def test_round_trip(signed):
    key, summary, html, sig = signed
    assert verify(ReportFiles(summary, html, sig), key.public_key()) == report_signing.key_id(
        key.public_key()
    )


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _failures(make, n: int, pub) -> list[str]:
    """Verify each of ``n`` altered versions; return the messages (one per caught alteration)."""
    out = []
    for i in range(n):
        try:
            verify(make(i), pub)
        except ReportTampered as e:
            out.append(e.message)
    return out


def test_every_flipped_byte_of_summary_or_html_is_caught_and_the_file_named():
    # Every byte of a one-server report (both files), to keep the loop quick on a small machine.
    small = replace(demo_summary(), servers=demo_summary().servers[:1])
    key = Ed25519PrivateKey.generate()
    summary, html = small.canonical_bytes(), render_html(small).encode()
    sig, pub = sign(summary, html, key), key.public_key()
    msgs = _failures(lambda i: ReportFiles(_flip(summary, i), html, sig), len(summary), pub)
    assert len(msgs) == len(summary)
    assert all(m.startswith("summary.json changed after the report was signed") for m in msgs)
    msgs = _failures(lambda i: ReportFiles(summary, _flip(html, i), sig), len(html), pub)
    assert len(msgs) == len(html)
    assert all(m.startswith("report.html changed after the report was signed") for m in msgs)


def test_flipped_bytes_across_the_full_report_are_caught(signed):
    key, summary, html, sig = signed
    pub = key.public_key()
    for data, name, make in (
        (summary, "summary.json", lambda d: ReportFiles(d, html, sig)),
        (html, "report.html", lambda d: ReportFiles(summary, d, sig)),
    ):
        idx = range(0, len(data), 37)
        msgs = _failures(lambda k, make=make, data=data, idx=idx: make(_flip(data, idx[k])), len(idx), pub)
        assert len(msgs) == len(idx) and all(m.startswith(name) for m in msgs)


def test_every_flipped_byte_of_the_signature_file_is_caught(signed):
    key, summary, html, sig = signed
    msgs = _failures(lambda i: ReportFiles(summary, html, _flip(sig, i)), len(sig), key.public_key())
    assert len(msgs) == len(sig)
    assert all("report.sig" in m for m in msgs)


def test_moving_bytes_between_the_files_or_truncating_is_caught(signed):
    key, summary, html, sig = signed
    with pytest.raises(ReportTampered):
        verify(ReportFiles(summary + html[:1], html[1:], sig), key.public_key())
    with pytest.raises(ReportTampered, match="report.html"):
        verify(ReportFiles(summary, html[:-1], sig), key.public_key())


def test_a_report_re_signed_with_another_key_is_refused(signed):
    key, summary, html, _ = signed
    forged_html = html.replace(b"Alice Martin", b"Mallory X")
    forged = sign(summary, forged_html, Ed25519PrivateKey.generate())
    with pytest.raises(ReportTampered, match="not with the operator's key"):
        verify(ReportFiles(summary, forged_html, forged), key.public_key())
    assert ReportTampered("x").exit_code == 13


def test_key_created_0600_on_first_use_with_public_key_exported(tmp_path, caplog):
    path = tmp_path / "state" / "keys" / "report-signing.key"
    with caplog.at_level("WARNING"):
        key = report_signing.load_or_create_key(path)
    assert "generated a new report-signing key" in caplog.text and str(path) in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    pub = report_signing.load_public_key(report_signing.public_key_path(path))
    assert report_signing.key_id(pub) == report_signing.key_id(key.public_key())
    again = report_signing.load_or_create_key(path)  # same key, no new one
    assert report_signing.key_id(again.public_key()) == report_signing.key_id(key.public_key())
    path.chmod(0o644)
    with pytest.raises(report_signing.SigningKeyUnsafe, match="chmod 600"):
        report_signing.load_private_key(path)


def test_key_file_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DRCTL_REPORT_KEY_FILE", str(tmp_path / "op.key"))
    assert report_signing.default_key_path(tmp_path / "state") == tmp_path / "op.key"


def _drctl(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "drctl.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_verify_passes_then_exits_13_naming_the_tampered_file(tmp_path):
    env = {**os.environ, "DRCTL_STATE_DIR": str(tmp_path / "state")}
    env.pop("DRCTL_REPORT_KEY_FILE", None)
    store = RunStore(tmp_path / "state")
    run = store.record(demo_summary())
    ok = _drctl("report", "verify", "20260203T170100Z-3f9a1c", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "signature valid" in ok.stdout
    html = run.html_path.read_bytes()
    run.html_path.write_bytes(html.replace(b"Alice Martin", b"Alice Martio"))
    bad = _drctl("report", "verify", str(run.path), env=env)
    assert bad.returncode == 13
    assert f"drctl: {run.html_path} changed after the report was signed" in bad.stderr
    run.html_path.write_bytes(html)
    data = run.summary_path.read_bytes()
    run.summary_path.write_bytes(data.replace(b'"status": "failed"', b'"status": "ok"    '))
    bad = _drctl("report", "verify", "20260203T170100Z", env=env)  # a unique prefix is enough
    assert bad.returncode == 13 and str(run.summary_path) in bad.stderr
    # `drctl report export` refuses to export a tampered report, `report show` to show it
    out = _drctl("report", "export", "20260203T170100Z-3f9a1c", "--html", str(tmp_path / "r.html"), env=env)
    assert out.returncode == 13 and not (tmp_path / "r.html").exists()
    shown = _drctl("report", "show", "20260203T170100Z-3f9a1c", "--json", env=env)
    assert shown.returncode == 13 and error_of(shown.stdout)["error"] == "ReportTampered"
    run.summary_path.write_bytes(data)
    run.signature_path.unlink()
    gone = _drctl("report", "verify", str(run.path), env=env)
    assert gone.returncode == 13 and "report.sig is missing" in gone.stderr
