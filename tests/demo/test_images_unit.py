"""Pure parts of the demo image builder: what goes into each server's disk, the MBR, cache keys."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from drctl.activation.targets.sandbox import guest_mac
from drctl.demo.images import builder, disk, roles, rootfs
from drctl.plan.load import load_plan

PLAN_PATH = Path(__file__).resolve().parents[2] / "recovery_plans" / "demo.yaml"


@pytest.fixture(scope="module")
def plan():
    return load_plan(PLAN_PATH)


def setup_of(plan, name, broken=False):
    server = plan.server(name)
    macs = [guest_mac(name, i) for i in range(len(server.nics))]
    return roles.guest_setup(plan, server, macs=macs, db_password="pw'1", broken=broken)


def files(setup):
    return {f.path: f for f in setup.files}


def test_dns_server_answers_for_every_server_of_the_site_and_nothing_else(plan):
    conf = files(setup_of(plan, "dns01"))["/etc/dnsmasq.conf"].content
    for s in plan.servers:
        assert f"host-record={s.name}.demo.lan,{s.name},{s.nics[0].ip}" in conf
    assert "no-resolv" in conf.splitlines()  # no upstream: the sandbox has no way out
    # dns01 resolves through itself, the others through dns01's production address
    assert "nameserver 127.0.0.1" in files(setup_of(plan, "dns01"))["/etc/resolv.conf"].content
    assert "nameserver 192.168.10.10" in files(setup_of(plan, "app01"))["/etc/resolv.conf"].content


def test_network_config_has_the_production_address_and_the_plan_gateway(plan):
    net = files(setup_of(plan, "db01"))["/etc/systemd/network/10-nic0.network"].content
    assert "Name=en* eth*" in net  # one NIC: whatever MAC the target gives it
    assert "Address=192.168.10.20/24" in net
    assert "Gateway=192.168.10.1" in net


def test_several_nics_are_told_apart_by_the_sandbox_mac_and_only_the_first_routes(plan):
    db = plan.server("db01")
    two = dataclasses.replace(db, nics=(db.nics[0], dataclasses.replace(db.nics[0], ip="192.168.10.21")))
    macs = [guest_mac("db01", 0), guest_mac("db01", 1)]
    setup = roles.guest_setup(plan, two, macs=macs, db_password="x")
    nic0, nic1 = (files(setup)[f"/etc/systemd/network/10-nic{i}.network"].content for i in (0, 1))
    assert f"MACAddress={macs[0]}" in nic0 and f"MACAddress={macs[1]}" in nic1
    assert "Gateway=" in nic0 and "Gateway=" not in nic1


def test_app_reads_the_database_by_name_and_web_proxies_to_the_app_address(plan):
    app = files(setup_of(plan, "app01"))
    assert '"host": "db01.demo.lan"' in app["/etc/catalogue-app/db.json"].content
    assert app["/etc/catalogue-app/db.json"].mode == 0o600  # holds the database password
    assert "8080" in app["/opt/catalogue-app/app.py"].content
    web = files(setup_of(plan, "web01"))["/etc/nginx/sites-available/default"].content
    assert "proxy_pass http://192.168.10.30:8080;" in web


def test_the_database_holds_what_the_cross_server_checks_look_for(plan):
    sql = dict(setup_of(plan, "db01").sql)
    wanted = {c.spec["contains"] for s in plan.servers for c in s.checks if c.kind == "http"}
    assert wanted == {roles.CATALOGUE_BANNER}
    assert f"'{roles.CATALOGUE_BANNER}'" in sql["catalogue"]
    assert "PASSWORD 'pw''1'" in sql["postgres"]  # quotes doubled, not breaking the statement


def test_each_server_enables_its_role_units_only(plan):
    db = setup_of(plan, "db01")
    assert "postgresql.service" in db.enable and "dropbear.service" in db.enable
    assert "nginx.service" in db.disable and "dnsmasq.service" in db.disable
    web = setup_of(plan, "web01")
    assert "nginx.service" in web.enable and "postgresql.service" in web.disable
    files01 = files(setup_of(plan, "files01"))
    assert "/srv/share/README.txt" in files01


def test_service_checks_of_the_plan_name_units_the_images_start(plan):
    for s in plan.servers:
        setup = setup_of(plan, s.name)
        for c in s.checks:
            if c.kind == "service":
                unit = c.spec if "." in c.spec else c.spec + ".service"
                role_units = {roles.MAIN_UNIT[r] for r in setup.roles}
                assert unit in role_units, f"{s.name}: check {c.spec} is not a unit its roles start"


def test_broken_variant_masks_the_main_service_only(plan):
    ok, broken = setup_of(plan, "db01"), setup_of(plan, "db01", broken=True)
    assert "postgresql@15-main.service" in broken.mask
    assert set(broken.mask) - set(ok.mask) == {"postgresql@15-main.service"}
    assert broken.files == ok.files


def test_a_server_needing_a_missing_role_is_refused(plan):
    no_sql = dataclasses.replace(plan, servers=tuple(s for s in plan.servers if s.name != "db01"))
    with pytest.raises(roles.RoleError, match="role 'sql'"):
        roles.guest_setup(no_sql, no_sql.server("app01"), macs=["52:54:00:00:00:01"], db_password="x")


def test_image_key_follows_the_server_entry_and_the_variant(plan):
    db = plan.server("db01")
    k = builder.image_key(plan, db, broken=False, credentials="c")
    assert k == builder.image_key(plan, db, broken=False, credentials="c")
    assert k != builder.image_key(plan, db, broken=True, credentials="c")
    assert k != builder.image_key(plan, db, broken=False, credentials="other")
    bigger = dataclasses.replace(db, ram_mb=1024)
    assert k != builder.image_key(
        dataclasses.replace(plan, servers=(bigger,) + plan.servers[1:]), bigger, broken=False, credentials="c"
    )
    assert builder.image_name("db01", k, True) == f"db01-broken-{k}.raw"


def test_mbr_has_one_bootable_linux_partition_after_the_boot_code():
    sector = disk.mbr(b"\xeb" * 500, 2048, 4096)
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    assert sector[:440] == b"\xeb" * 440  # boot code clipped to 440 bytes: the table stays intact
    status, ptype, start, count = sector[446], sector[450], *struct.unpack("<II", sector[454:462])
    assert (status, ptype, start, count) == (0x80, 0x83, 2048, 4096)
    assert sector[462:510] == b"\0" * 48  # the three other entries empty


def test_apt_mirrors_come_from_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security/\nSuites: bookworm-security\n"
    )
    assert rootfs.apt_mirrors(tmp_path) == {
        "debian": "http://mirror.example/debian",
        "debian-security": "http://mirror.example/debian-security",
    }
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert rootfs.apt_mirrors(tmp_path)["debian"] == "http://other.example/debian"
    assert rootfs.apt_mirrors(tmp_path)["debian-security"] == rootfs.DEFAULT_MIRRORS["debian-security"]


def test_mmdebstrap_command_takes_the_three_bookworm_suites_and_every_role_package():
    argv = rootfs.mmdebstrap_argv(
        Path("/x"), {"debian": "http://m/debian", "debian-security": "http://m/sec"}
    )
    assert argv[-3:] == [
        "deb http://m/debian bookworm main",
        "deb http://m/debian bookworm-updates main",
        "deb http://m/sec bookworm-security main",
    ]
    include = next(a for a in argv if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert {"postgresql-15", "dnsmasq", "samba", "nginx-light", "python3-psycopg2", "dropbear"} <= set(
        include
    )


def test_ssh_key_is_private_and_reused(tmp_path):
    priv, pub = builder.ensure_ssh_key(tmp_path)
    assert priv.stat().st_mode & 0o777 == 0o600
    assert pub.startswith("ssh-ed25519 ")
    assert builder.ensure_ssh_key(tmp_path) == (priv, pub)
    import paramiko

    key = paramiko.Ed25519Key.from_private_key_file(str(priv))
    assert pub.split()[1] == key.get_base64()
