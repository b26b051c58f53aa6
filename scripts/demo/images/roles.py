"""What each demo role puts into a server's disk: files, units to enable, database content.

Pure: from the plan and one of its servers, :func:`guest_setup` returns a :class:`GuestSetup`
(file contents, systemd units, SQL) that :mod:`drctl.demo.images.builder` writes into a copy of
the base root filesystem. Every server's disk holds the packages of all roles (one base serves
all); only the units of its own roles are enabled.

Roles (the plan's ``roles`` list):

=====  ===============================================================================
dns    dnsmasq answering for the site's domain (every server with a NIC in the site)
sql    PostgreSQL 15 listening on the network, database ``catalogue`` with the banner
app    a python3 http.server on :8080 reading the banner from the ``sql`` server by name
smb    Samba share ``share`` at ``/srv/share`` (with ``README.txt``)
web    nginx on :80 proxying to the ``app`` server's :8080
ssh    dropbear (enabled on every server: the verification logs in with the run's key)
=====  ===============================================================================
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from drctl.plan.model import Plan, Server

# What the cross-server checks look for: stored in db01's data files, served by app01, proxied by web01.
CATALOGUE_BANNER = "catalogue from db01"
APP_PORT = 8080
DB_NAME = "catalogue"
DB_USER = "catalogue"
# The guest's connection limit; the demo's WAL (drctl.demo.wal_archive) records the same, which a
# replay requires.
DB_MAX_CONNECTIONS = 20

# The unit a role's checks are about; ``--break SERVER`` masks it.
MAIN_UNIT = {
    "dns": "dnsmasq.service",
    "sql": "postgresql@15-main.service",
    "app": "catalogue-app.service",
    "smb": "smbd.service",
    "web": "nginx.service",
    "ssh": "dropbear.service",
}
# Units each role needs enabled (the base has them all installed, some enabled by their packages).
ROLE_UNITS = {
    "dns": ("dnsmasq.service",),
    "sql": ("postgresql.service",),
    "app": ("catalogue-app.service",),
    "smb": ("smbd.service",),
    "web": ("nginx.service",),
    "ssh": ("dropbear.service",),
}
# Enabled by packages or Debian defaults but useless (and slow under emulation) in a demo guest.
ALWAYS_DISABLED = (
    "nmbd.service",
    "samba-ad-dc.service",
    "e2scrub_reap.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
    "remote-fs.target",
)
BASE_UNITS = ("systemd-networkd.service", "dropbear.service")
# Not needed by the roles nor by the verification (systemctl talks to PID 1 over its private
# socket as root), and slow to start under software emulation.
ALWAYS_MASKED = ("systemd-logind.service", "dbus.service", "dbus.socket", "getty@tty1.service")


class RoleError(ValueError):
    """The plan does not give a role what it needs (e.g. an app server but no sql server)."""


@dataclass(frozen=True)
class GuestFile:
    path: str  # absolute path inside the guest
    content: str
    mode: int = 0o644
    owner: str = "root"


@dataclass(frozen=True)
class GuestSetup:
    hostname: str
    fqdn: str
    files: tuple[GuestFile, ...]
    enable: tuple[str, ...]
    disable: tuple[str, ...]
    mask: tuple[str, ...] = ()
    sql: tuple[tuple[str, str], ...] = ()  # (database, statements) run in single-user mode at build time
    machine_id: str = ""
    roles: tuple[str, ...] = field(default_factory=tuple)


def site_of(plan: Plan, server: Server):
    """The site holding the server's first NIC (its DNS domain is the server's domain)."""
    ref = server.nics[0].subnet
    for site in plan.sites:
        if any(sn.ref == ref for sn in site.subnets):
            return site
    raise RoleError(f"server {server.name}: subnet {ref} is in no site of the plan")


def _role_server(plan: Plan, role: str, near: Server) -> Server:
    site = site_of(plan, near)
    refs = {sn.ref for sn in site.subnets}
    for s in plan.servers:
        if role in s.roles and s.nics and s.nics[0].subnet in refs:
            return s
    for s in plan.servers:
        if role in s.roles and s.nics:
            return s
    raise RoleError(f"server {near.name} needs a server with role {role!r} in the plan; none has it")


def _networkd(
    server: Server, plan: Plan, macs: list[str], dns_ip: str | None, domain: str
) -> list[GuestFile]:
    files = []
    for i, (nic, mac) in enumerate(zip(server.nics, macs, strict=False)):
        subnet = plan.subnet(nic.subnet)
        prefix = ipaddress.ip_network(subnet.cidr, strict=False).prefixlen
        # One NIC: match any Ethernet name, so the disk also comes up where the MAC differs (a cloud
        # port). Several: the MAC tells them apart (the sandbox sets guest_mac()).
        match = "Name=en* eth*" if len(server.nics) == 1 else f"MACAddress={mac}"
        lines = ["[Match]", match, "", "[Network]", f"Address={nic.ip}/{prefix}"]
        if i == 0:  # one default route: through the first NIC's gateway
            lines.append(f"Gateway={subnet.gateway}")
        lines += ["LinkLocalAddressing=no", "IPv6AcceptRA=no", ""]
        files.append(GuestFile(f"/etc/systemd/network/10-nic{i}.network", "\n".join(lines)))
    resolv = [f"search {domain}"] if domain else []
    resolv.append(f"nameserver {dns_ip or '127.0.0.1'}")
    files.append(GuestFile("/etc/resolv.conf", "\n".join(resolv) + "\n"))
    return files


def _dns_files(plan: Plan, server: Server, domain: str) -> list[GuestFile]:
    site = site_of(plan, server)
    refs = {sn.ref for sn in site.subnets}
    records = [
        f"host-record={s.name}.{domain},{s.name},{s.nics[0].ip}"
        for s in plan.servers
        if s.nics and s.nics[0].subnet in refs
    ]
    conf = "\n".join(
        [
            "# demo.lan answered here only: no upstream resolver (the sandbox has no way out).",
            "no-resolv",
            "no-hosts",
            "no-poll",
            f"domain={domain}",
            f"local=/{domain}/",
            "expand-hosts",
            *records,
            "",
        ]
    )
    return [GuestFile("/etc/dnsmasq.conf", conf)]


def _sql_files(plan: Plan, server: Server, db_password: str) -> tuple[list[GuestFile], list[tuple[str, str]]]:
    cidrs = sorted({plan.subnet(n.subnet).cidr for s in plan.servers for n in s.nics})
    hba = ["local all postgres peer", "local all all peer", "host all all 127.0.0.1/32 scram-sha-256"]
    hba += [f"host {DB_NAME} {DB_USER} {c} scram-sha-256" for c in cidrs]
    conf = "\n".join(
        [
            "# Small settings: the demo database runs in 512 MB under software emulation.",
            "listen_addresses = '*'",
            "shared_buffers = 16MB",
            f"max_connections = {DB_MAX_CONNECTIONS}",
            "work_mem = 1MB",
            "maintenance_work_mem = 8MB",
            "jit = off",
            "max_wal_size = 64MB",
            "min_wal_size = 32MB",
            "",
        ]
    )
    files = [
        GuestFile("/etc/postgresql/15/main/conf.d/demo.conf", conf),
        GuestFile("/etc/postgresql/15/main/pg_hba.conf", "\n".join(hba) + "\n", 0o640, "postgres"),
    ]
    pw = db_password.replace("'", "''")
    sql = [
        (
            "postgres",
            f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{pw}';\nCREATE DATABASE {DB_NAME} OWNER {DB_USER};\n",
        ),
        (
            DB_NAME,
            "CREATE TABLE banner (id integer PRIMARY KEY, text text NOT NULL);\n"
            f"INSERT INTO banner VALUES (1, '{CATALOGUE_BANNER}');\n"
            "CREATE TABLE item (sku text PRIMARY KEY, label text NOT NULL);\n"
            "INSERT INTO item VALUES ('A-100', 'Chaise'), ('A-200', 'Table'), ('A-300', 'Lampe');\n"
            f"ALTER TABLE banner OWNER TO {DB_USER};\nALTER TABLE item OWNER TO {DB_USER};\n",
        ),
    ]
    return files, sql


APP_SOURCE = '''\
"""Catalogue application of the demo: each request reads the banner and items from the database."""
import html
import json
import http.server

import psycopg2

with open("/etc/catalogue-app/db.json") as f:
    DB = json.load(f)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with psycopg2.connect(connect_timeout=5, **DB) as conn, conn.cursor() as cur:
                cur.execute("SELECT text FROM banner WHERE id = 1")
                banner = cur.fetchone()[0]
                cur.execute("SELECT sku, label FROM item ORDER BY sku")
                items = cur.fetchall()
            conn.close()
        except psycopg2.Error as e:
            self._send(503, "<h1>Catalogue unavailable</h1><p>database: %s</p>" % html.escape(str(e).strip()))
            return
        rows = "".join("<li>%s %s</li>" % (html.escape(s), html.escape(l)) for s, l in items)
        self._send(200, "<h1>Demo SARL</h1><p>%s</p><ul>%s</ul>" % (html.escape(banner), rows))

    def _send(self, status, body):
        data = ("<!doctype html><title>Catalogue</title>" + body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


http.server.ThreadingHTTPServer(("0.0.0.0", @PORT@), Handler).serve_forever()
'''

APP_UNIT = """\
[Unit]
Description=Demo catalogue application (reads the database on the sql server)
After=network.target

[Service]
User=catalogue
ExecStart=/usr/bin/python3 /opt/catalogue-app/app.py
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def _app_files(plan: Plan, server: Server, domain: str, db_password: str) -> list[GuestFile]:
    db = _role_server(plan, "sql", server)
    host = f"{db.name}.{domain}" if domain else db.nics[0].ip
    db_json = '{{"host": "{}", "port": 5432, "dbname": "{}", "user": "{}", "password": "{}"}}\n'.format(
        host, DB_NAME, DB_USER, db_password.replace("\\", "\\\\").replace('"', '\\"')
    )
    return [
        GuestFile("/opt/catalogue-app/app.py", APP_SOURCE.replace("@PORT@", str(APP_PORT))),
        GuestFile("/etc/catalogue-app/db.json", db_json, 0o600, "catalogue"),
        GuestFile("/etc/systemd/system/catalogue-app.service", APP_UNIT),
    ]


def _smb_files(plan: Plan, server: Server) -> list[GuestFile]:
    conf = "\n".join(
        [
            "[global]",
            "   workgroup = DEMO",
            f"   netbios name = {server.name.upper()}",
            "   server role = standalone server",
            "   disable netbios = yes",
            "   smb ports = 445",
            "   map to guest = bad user",
            "   load printers = no",
            "   printcap name = /dev/null",
            "   log file = /var/log/samba/log.%m",
            "   max log size = 1000",
            "",
            "[share]",
            "   path = /srv/share",
            "   read only = yes",
            "   guest ok = yes",
            "",
        ]
    )
    readme = f"Shared files of {plan.client.name}, served by {server.name} (Samba).\n"
    return [GuestFile("/etc/samba/smb.conf", conf), GuestFile("/srv/share/README.txt", readme)]


def _web_files(plan: Plan, server: Server) -> list[GuestFile]:
    app = _role_server(plan, "app", server)
    # The address, not the name: nginx resolves upstreams once at start and would refuse to start
    # if DNS were not answering yet.
    site = "\n".join(
        [
            "server {",
            "    listen 80 default_server;",
            "    server_name _;",
            "    location / {",
            f"        proxy_pass http://{app.nics[0].ip}:{APP_PORT};",
            "        proxy_connect_timeout 5s;",
            "        proxy_set_header Host $host;",
            "    }",
            "}",
            "",
        ]
    )
    return [GuestFile("/etc/nginx/sites-available/default", site)]


def machine_id(plan: Plan, server: Server) -> str:
    """A fixed machine id: an empty one would make systemd treat every boot as a first boot
    (presets applied again, which could re-enable a unit masked on purpose)."""
    return hashlib.sha256(f"{plan.client.id}/{server.name}".encode()).hexdigest()[:32]


def guest_setup(
    plan: Plan, server: Server, *, macs: list[str], db_password: str, broken: bool = False
) -> GuestSetup:
    """The configuration of ``server``'s disk. ``macs`` are its NICs' MAC addresses (in the sandbox,
    :func:`drctl.activation.targets.sandbox.guest_mac`); ``broken`` masks the main unit of its first non-ssh role."""
    if not server.nics:
        raise RoleError(f"server {server.name} has no NIC: a demo image needs its production address")
    site = site_of(plan, server)
    domain = site.dns_domain
    roles = tuple(server.roles) if "ssh" in server.roles else (*server.roles, "ssh")
    unknown = [r for r in roles if r not in ROLE_UNITS]
    if unknown:
        raise RoleError(f"server {server.name}: unknown demo role(s) {unknown}; known: {sorted(ROLE_UNITS)}")
    dns_ip = None if "dns" in roles else _role_server(plan, "dns", server).nics[0].ip
    fqdn = f"{server.name}.{domain}" if domain else server.name
    files = [
        GuestFile("/etc/hostname", server.name + "\n"),
        GuestFile(
            "/etc/hosts",
            f"127.0.0.1 localhost\n127.0.1.1 {fqdn} {server.name}\n"
            f"{server.nics[0].ip} {fqdn} {server.name}\n",
        ),
        GuestFile("/etc/fstab", "/dev/vda1 / ext4 errors=remount-ro 0 1\n"),
        GuestFile("/etc/machine-id", machine_id(plan, server) + "\n", 0o444),
        GuestFile(
            "/etc/systemd/journald.conf.d/volatile.conf", "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n"
        ),
        GuestFile("/etc/default/dropbear", 'DROPBEAR_EXTRA_ARGS="-s"\n'),  # keys only, no passwords
        *_networkd(server, plan, macs, dns_ip, domain),
    ]
    sql: list[tuple[str, str]] = []
    if "dns" in roles:
        files += _dns_files(plan, server, domain)
    if "sql" in roles:
        f, sql = _sql_files(plan, server, db_password)
        files += f
    if "app" in roles:
        files += _app_files(plan, server, domain, db_password)
    if "smb" in roles:
        files += _smb_files(plan, server)
    if "web" in roles:
        files += _web_files(plan, server)
    enable = tuple(dict.fromkeys([*BASE_UNITS, *(u for r in roles for u in ROLE_UNITS[r])]))
    others = tuple(u for r, units in ROLE_UNITS.items() if r not in roles for u in units)
    mask: tuple[str, ...] = ALWAYS_MASKED
    if broken:
        main_roles = [r for r in roles if r != "ssh"] or ["ssh"]
        mask = (*mask, MAIN_UNIT[main_roles[0]])
    return GuestSetup(
        hostname=server.name,
        fqdn=fqdn,
        files=tuple(files),
        enable=enable,
        disable=(*ALWAYS_DISABLED, *others),
        mask=mask,
        sql=tuple(sql),
        machine_id=machine_id(plan, server),
        roles=roles,
    )
