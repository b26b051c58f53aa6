"""The report page: content, self-containment, timeline geometry, and a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drctl.runs.report import CHART_W, LABEL_W, fmt_duration, render_html, timeline_layout
from tests.runs.fixtures import demo_summary
from tests.runs.reconnection_fixtures import MISMATCH, lyon_skipped, paris_failed, paris_ok

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need_chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("DRCTL_ALLOW_SKIP") == "1":
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.fail("Debian's chromium is needed to check the report page: apt-get install chromium")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.by_id: dict[str, str] = {}
        self._open_ids: list[tuple[str, str, int]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self._open_ids.append((a["id"], tag, len(self.text)))

    def handle_endtag(self, tag):
        for i in range(len(self._open_ids) - 1, -1, -1):
            ident, t, start = self._open_ids[i]
            if t == tag:
                self.by_id[ident] = " ".join(" ".join(self.text[start:]).split())
                del self._open_ids[i]
                break

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


def test_page_states_the_summary_numbers():
    html = render_html(demo_summary())
    assert render_html(demo_summary()) == html  # deterministic: the stored bytes are what is signed
    ids = parse(html).by_id
    assert ids["client"].startswith("Demo SARL")
    assert ids["run-id"] == "20260203T170100Z-3f9a1c"
    assert ids["mode"].startswith("test")
    assert ids["requested-by"] == "Alice Martin"
    assert ids["started"] == "2026-02-03 17:01:00 UTC"
    assert ids["ended"].startswith("2026-02-03 17:08:10 UTC")
    assert ids["first-available"] == "1 min 02 s"  # dns01 verified 62 s after the start
    assert ids["last-available"] == "3 min 00 s"  # db01 verified 180 s after the start
    assert ids["override"].startswith("Semi-annual DR test")
    assert ids["servers-total"] == "5" and ids["os-linux"] == "5"
    assert (ids["count-ok"], ids["count-warning"], ids["count-failed"], ids["count-not-started"]) == (
        "2",
        "1",
        "1",
        "1",
    )
    # one section per server, with its checks and figures
    assert "server-web01" in ids and ids["server-web01"].startswith("web01 not-started")
    assert "upstream server app01 failed" in ids["server-web01"]
    files = ids["server-files01"]
    assert "1 d 06 h / 1 d 00 h missed" in files  # restore point 30 h old, target 24 h
    assert "port 445 no FAILED 14" in files  # the non-critical check, its attempts
    db = ids["server-db01"]
    assert "11 min 00 s / 15 min 00 s met" in db
    assert "3 min 00 s / 2 h 00 min met" in db
    assert "HTTP 500 (expected 200)" in ids["server-app01"]


def test_times_are_also_given_in_the_clients_time_zone():
    ids = parse(render_html(demo_summary(client_timezone="Europe/Paris"))).by_id
    assert ids["started"] == "2026-02-03 17:01:00 UTC \u00b7 2026-02-03 18:01:00 Europe/Paris"  # CET, UTC+1
    assert ids["ended"].startswith("2026-02-03 17:08:10 UTC \u00b7 2026-02-03 18:08:10 Europe/Paris")
    summer = demo_summary(client_timezone="Europe/Paris", started_at=datetime(2026, 7, 1, 8, 0, tzinfo=UTC))
    assert parse(render_html(summer)).by_id["started"].endswith("2026-07-01 10:00:00 Europe/Paris")  # CEST
    unknown = parse(render_html(demo_summary(client_timezone="Mars/Olympus"))).by_id
    assert unknown["started"] == "2026-02-03 17:01:00 UTC"  # an unknown zone is left out, not guessed


def test_no_override_line_when_inside_the_window_and_disaster_title():
    html = render_html(demo_summary(override_reason=None, mode="disaster"))
    assert 'id="override"' not in html
    assert "<h1>DR activation report</h1>" in html


def test_page_is_self_contained_and_escapes_text():
    evil = demo_summary()
    evil = replace(
        evil,
        requested_by='<script>alert("x")</script>',
        servers=tuple(
            replace(v, reason='<img src="http://203.0.113.9/x.png">') if v.name == "app01" else v
            for v in evil.servers
        ),
    )
    html = render_html(evil)
    page = parse(html)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    for _, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "srcset", "action"):
            assert name not in attrs, f"external reference via {name}: {attrs}"
    assert not re.search(r"url\((?!#)", html), "CSS may only reference in-page SVG fragments"
    assert "@import" not in html
    assert "&lt;img src=" in html  # the hostile reason is shown as text, never loaded
    assert "&lt;script&gt;" in html  # escaped, shown as text


def test_timeline_puts_each_server_after_its_verified_upstreams():
    s = demo_summary()
    tl = timeline_layout(s)
    assert [r.name for r in tl.rows] == ["dns01", "files01", "db01", "app01", "web01"]  # by level, then name
    span = 430.0  # the run lasted 7 min 10 s

    def x(sec: float) -> float:
        return round(LABEL_W + sec / span * CHART_W, 2)

    arrows = {(a.upstream, a.downstream): a for a in tl.arrows}
    assert set(arrows) == {("dns01", "db01"), ("db01", "app01"), ("dns01", "app01"), ("app01", "web01")}
    # db01 booted at 90 s after dns01 was verified at 62 s; app01 booted at 180 s when db01 was verified.
    assert (arrows["dns01", "db01"].x1, arrows["dns01", "db01"].x2) == (x(62), x(90))
    assert (arrows["db01", "app01"].x1, arrows["db01", "app01"].x2) == (x(180), x(180))
    for a in tl.arrows:
        if a.kind == "started-after":
            assert a.x2 >= a.x1
    assert arrows["app01", "web01"].kind == "blocked"
    rows = {r.name: r for r in tl.rows}
    assert [b.kind for b in rows["web01"].bars] == ["restore"]
    assert rows["web01"].note.startswith("not started")
    assert [b.kind for b in rows["app01"].bars] == ["restore", "boot", "checks-failed"]
    assert [b.kind for b in rows["files01"].bars] == ["restore", "boot", "checks-warning"]
    assert rows["dns01"].verified_x == x(62) and rows["app01"].verified_x is None
    # files01's checks bar: first check passed at 88 s, verified at 95 s.
    chk = rows["files01"].bars[2]
    assert (chk.x, round(chk.x + chk.w, 2)) == (x(88), pytest.approx(x(95), abs=0.02))
    assert [label for _, label in tl.ticks][:3] == ["0:00", "1:00", "2:00"]
    # a server with no checks in the plan, available at boot + 30 s: a boot bar, not "no answer"
    bare = replace(
        s.server("dns01"), checks=(), verified_at=s.server("dns01").boot_started_at + timedelta(seconds=30)
    )
    row = timeline_layout(replace(s, servers=(bare,))).rows[0]
    assert [b.kind for b in row.bars] == ["restore", "boot", "checks-ok"]


def test_durations_read_naturally():
    assert [fmt_duration(v) for v in (None, 0, 59.6, 62, 3600, 7260, 90000)] == [
        "\u2014",
        "0 s",
        "1 min 00 s",
        "1 min 02 s",
        "1 h 00 min",
        "2 h 01 min",
        "1 d 01 h",
    ]


def _png_pixels(path: Path) -> tuple[int, int, set[tuple[int, ...]]]:
    """Minimal PNG decoder (8-bit RGB/RGBA, not interlaced) returning the distinct colours."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, colours, i = bytearray(stride), set(), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for k in range(stride):
            a = line[k - bpp] if k >= bpp else 0
            b, c = prev[k], prev[k - bpp] if k >= bpp else 0
            if f == 1:
                line[k] = (line[k] + a) & 255
            elif f == 2:
                line[k] = (line[k] + b) & 255
            elif f == 3:
                line[k] = (line[k] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[k] = (line[k] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(bytes(line[k : k + 3]) for k in range(0, stride, bpp * 7))  # sample every 7th pixel
        prev = line
    return w, h, colours


def test_real_browser_renders_the_report(tmp_path):
    chromium = need_chromium()
    page = tmp_path / "report.html"
    page.write_text(render_html(replace(demo_summary(), reconnection=(paris_ok(),))), encoding="utf-8")
    png = tmp_path / "report.png"
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    shot = subprocess.run(
        [*common, f"--screenshot={png}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, env=env
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = parse(dom.stdout).by_id
    assert shown["first-available"] == "1 min 02 s"
    assert shown["last-available"] == "3 min 00 s"
    assert (shown["count-ok"], shown["count-warning"], shown["count-failed"], shown["count-not-started"]) == (
        "2",
        "1",
        "1",
        "1",
    )
    assert dom.stdout.count('class="bar ') == 13  # 5 restores + 4 boots + 4 checks bars drawn
    assert shown["sites-reconnected"] == "1/1"
    assert dom.stdout.count('class="step ok"') == 11  # paris: every lab step, each with its time
    w, h, colours = _png_pixels(png)
    assert (w, h) == (1280, 2000)
    assert png.stat().st_size > 50_000, "a blank page compresses to a few KB"
    palette = {
        bytes.fromhex(c) for c in ("1e6fd9", "8e6cc2", "2e7d32", "c62828")
    }  # restore, boot, ok, failed
    assert palette <= colours, f"timeline colours missing from the screenshot: {palette - colours}"
    assert len(colours) > 50  # text antialiasing, cards, bars: not a blank or flat image
    # print-friendly: A4 pages, the per-server detail starting on its own page
    pdf = tmp_path / "report.pdf"
    printed = subprocess.run(
        [*common, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert printed.returncode == 0, printed.stderr[-2000:]
    pages = max(int(n) for n in re.findall(rb"/Count (\d+)", pdf.read_bytes()))
    assert pages >= 3, f"expected a summary page then server pages, got {pages} page(s)"
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_a_run_where_no_server_came_up_shows_dashes_not_numbers():
    s = demo_summary(
        first_available_s=None,
        last_available_s=None,
        ended_at=None,
        servers=(replace(demo_summary().server("web01"), depends_on=()),),
    )
    ids = parse(render_html(s)).by_id
    assert ids["first-available"] == ids["last-available"] == "\u2014"
    assert ids["ended"] == "\u2014"
    assert ids["count-not-started"] == "1" and ids["count-ok"] == "0"


# --- network and user reconnection ---------------------------------------------------------------


def test_reconnection_section_per_site_and_in_the_summary():
    page = parse(render_html(replace(demo_summary(), reconnection=(paris_ok(), lyon_skipped()))))
    ids = page.by_id
    assert ids["sites-reconnected"] == "1/2"  # paris ok, lyon skipped
    assert (
        ids["reconnection-summary"].replace(" ;", ";").endswith("paris ok; lyon skipped")
    )  # text nodes joined by spaces
    card = next(a for tag, a in page.tags if a.get("id") == "card-reconnection")
    assert card["class"] == "card skipped"  # nothing failed, but not every site was proven
    paris = ids["site-paris"]
    assert paris.startswith("Site paris ok")
    assert "app01: GET http://192.168.10.30:8080/ containing 'catalogue from db01'" in paris
    assert "2026-02-03 17:07:45 UTC \u00b7 14.2 s in total" in paris
    assert "IPsec tunnel up with exactly the declared proposals OK 2.50 s IKEv2 AES_CBC-256" in paris
    assert "Workstation lease from the NCA's DHCP OK 3.10 s lease 192.168.20.100/24" in paris
    assert (
        "Recovered server's service reached through the tunnel OK 0.40 s GET http://192.168.10.30:8080/ -> 200"
        in paris
    )
    assert "FAILED" not in paris and "not run" not in paris
    lyon = ids["site-lyon"]
    assert lyon.startswith("Site lyon skipped no recovered server is available")
    assert "Step" not in lyon  # no step table: nothing ran


def test_failed_reconnection_shows_the_failed_step_and_what_was_not_proven():
    s = replace(demo_summary(), reconnection=(paris_failed(),))
    page = parse(render_html(s))
    ids = page.by_id
    assert ids["sites-reconnected"] == "0/1"
    assert ids["reconnection-summary"].endswith("paris failed at step tunnel")
    assert next(a for _, a in page.tags if a.get("id") == "card-reconnection")["class"] == "card failed"
    assert ids["outcome"] == "failed"
    paris = ids["site-paris"]
    assert f"step 'tunnel' failed: {MISMATCH}" in paris
    assert "IPsec tunnel up with exactly the declared proposals FAILED 1.50 s proposal mismatch" in paris
    for label in (
        "Workstation lease from the NCA's DHCP",
        "Recovered server's name resolved by the NCA's DNS",
        "Recovered server answers ICMP through the tunnel",
        "Recovered server's service reached through the tunnel",
        "Declared PFS group used on rekey",
    ):
        assert f"{label} not run \u2014 not run: an earlier step failed" in paris, label
    rows = [a["data-step"] for _, a in page.tags if "data-step" in a]
    assert rows == [
        "bundle-check",
        "namespaces",
        "cloud-endpoint",
        "nca-start",
        "tunnel",
        "pfs-rekey",
        "dhcp",
        "dns",
        "icmp",
        "tcp",
        "teardown",
    ]  # the lab's order, the teardown last


def test_a_drill_without_reconnection_says_so_and_an_activation_has_no_section():
    drill = parse(render_html(demo_summary())).by_id  # the fixture is a local drill
    assert drill["reconnection-none"] == "Not tested in this run."
    assert "sites-reconnected" not in drill
    cloud = parse(render_html(demo_summary(target="cloud"))).by_id
    assert "drctl nca test demo --site SITE" in cloud["reconnection-none"]
    html = render_html(demo_summary(kind="activation"))
    assert 'id="reconnection"' not in html
