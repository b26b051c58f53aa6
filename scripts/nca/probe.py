"""What a workstation does on the site LAN, in plain sockets: DHCP, DNS, ICMP echo, HTTP.

``drctl nca test`` runs this module inside the workstation's network namespace
(``ip netns exec NS python -m drctl.nca.probe ACTION ...``); each action prints one JSON object
and exits 0 when it got an answer, 1 otherwise (the JSON then has ``error``). Debian 12 ships no
DHCP client, ping or dig in a minimal install, and a few hundred lines of stdlib beat three more
packages: the protocols used are the small, stable subsets every workstation speaks
(RFC 2131/2132 DISCOVER-OFFER-REQUEST-ACK with the broadcast flag, RFC 1035 A queries, ICMP echo).
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import secrets
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

_DHCP_MAGIC = b"\x63\x82\x53\x63"
_DISCOVER, _OFFER, _REQUEST, _ACK, _NAK = 1, 2, 3, 5, 6
_SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


class ProbeFailed(Exception):
    """The probe got no usable answer; the message says what was missing."""


# --- DHCP ---------------------------------------------------------------------------------------


def _dhcp_packet(xid: int, mac: bytes, msg_type: int, extra: list[tuple[int, bytes]]) -> bytes:
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        xid,
        0,
        0x8000,  # broadcast flag
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        mac.ljust(16, b"\0"),
        b"\0" * 64,
        b"\0" * 128,
    )
    opts = [(53, bytes([msg_type])), (61, b"\x01" + mac), (55, bytes([1, 3, 6, 15, 51, 54]))] + extra
    body = b"".join(bytes([code, len(val)]) + val for code, val in opts)
    return head + _DHCP_MAGIC + body + b"\xff"


def _dhcp_parse(data: bytes) -> tuple[int, str, dict[int, bytes]]:
    if len(data) < 240 or data[236:240] != _DHCP_MAGIC:
        raise ValueError("not a DHCP packet")
    xid = struct.unpack("!I", data[4:8])[0]
    yiaddr = socket.inet_ntoa(data[16:20])
    opts: dict[int, bytes] = {}
    i = 240
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        length = data[i + 1]
        opts[code] = data[i + 2 : i + 2 + length]
        i += 2 + length
    return xid, yiaddr, opts


def _ips(raw: bytes) -> list[str]:
    return [socket.inet_ntoa(raw[i : i + 4]) for i in range(0, len(raw) - 3, 4)]


def dhcp_lease(iface: str, timeout: float = 10.0) -> dict[str, Any]:
    """DISCOVER -> OFFER -> REQUEST -> ACK on ``iface`` (which has no address yet)."""
    mac = bytes.fromhex(Path(f"/sys/class/net/{iface}/address").read_text().strip().replace(":", ""))
    xid = secrets.randbits(32)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, iface.encode() + b"\0")
        sock.bind(("", 68))
        deadline = time.monotonic() + timeout

        def exchange(packet: bytes, want: int) -> tuple[str, dict[int, bytes]]:
            resend = 0.0
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise ProbeFailed(f"no DHCP answer on {iface} within {timeout:.0f}s")
                if now >= resend:  # retransmit like a real client
                    sock.sendto(packet, ("255.255.255.255", 67))
                    resend = now + 1.0
                sock.settimeout(max(0.05, min(resend, deadline) - time.monotonic()))
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    continue
                try:
                    rxid, yiaddr, opts = _dhcp_parse(data)
                except ValueError:
                    continue
                if rxid != xid or 53 not in opts:
                    continue
                if opts[53][0] == _NAK:
                    raise ProbeFailed(f"DHCP server {_ips(opts.get(54, b''))} refused the request (NAK)")
                if opts[53][0] == want:
                    return yiaddr, opts

        offered, offer = exchange(_dhcp_packet(xid, mac, _DISCOVER, []), _OFFER)
        server_id = offer.get(54, b"")
        ip, ack = exchange(
            _dhcp_packet(xid, mac, _REQUEST, [(50, socket.inet_aton(offered)), (54, server_id)]), _ACK
        )
    finally:
        sock.close()
    mask = socket.inet_ntoa(ack[1]) if 1 in ack else "255.255.255.255"
    return {
        "ip": ip,
        "netmask": mask,
        "prefixlen": ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen,
        "router": _ips(ack.get(3, b"")),
        "dns": _ips(ack.get(6, b"")),
        "domain": ack.get(15, b"").decode("ascii", "replace").rstrip("\0"),
        "lease_s": struct.unpack("!I", ack[51])[0] if 51 in ack else None,
        "server": _ips(server_id)[0] if server_id else None,
    }


# --- DNS ----------------------------------------------------------------------------------------


def _skip_name(data: bytes, i: int) -> int:
    while True:
        length = data[i]
        if length & 0xC0 == 0xC0:
            return i + 2
        if length == 0:
            return i + 1
        i += 1 + length


def dns_query(server: str, name: str, timeout: float = 3.0) -> dict[str, Any]:
    """One A query to ``server``:53; returns rcode and addresses."""
    qid = secrets.randbits(16)
    qname = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split(".")) + b"\0"
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, (server, 53))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            raise ProbeFailed(f"no DNS answer from {server} within {timeout:.0f}s") from None
    rid, flags, qd, an = struct.unpack("!HHHH", data[:8])
    if rid != qid:
        raise ProbeFailed(f"DNS answer from {server} has the wrong id")
    i = 12
    for _ in range(qd):
        i = _skip_name(data, i) + 4
    addresses = []
    for _ in range(an):
        i = _skip_name(data, i)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[i : i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            addresses.append(socket.inet_ntoa(data[i : i + 4]))
        i += rdlen
    return {"server": server, "name": name, "rcode": flags & 0xF, "addresses": addresses}


# --- ICMP echo ----------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(dest: str, count: int = 3, timeout: float = 2.0) -> dict[str, Any]:
    """ICMP echo requests over a raw socket (root); returns how many replies came back."""
    ident = os.getpid() & 0xFFFF
    rtts = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        for seq in range(1, count + 1):
            payload = b"drctl-nca-probe"
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
            start = time.monotonic()
            sock.sendto(packet, (dest, 0))
            deadline = start + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, addr = sock.recvfrom(2048)
                except TimeoutError:
                    break
                ihl = (data[0] & 0x0F) * 4
                rtype, _code, _ck, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
                if rtype == 0 and rid == ident and rseq == seq and addr[0] == dest:
                    rtts.append((time.monotonic() - start) * 1000)
                    break
    return {"dest": dest, "sent": count, "received": len(rtts), "rtt_ms": [round(r, 2) for r in rtts]}


# --- HTTP ---------------------------------------------------------------------------------------


def http_get(host: str, port: int, path: str = "/", timeout: float = 5.0) -> dict[str, Any]:
    """A plain HTTP GET (no proxy from the environment: the target is inside the lab)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "drctl-nca-probe"})
        resp = conn.getresponse()
        body = resp.read(65536)
    except OSError as e:
        raise ProbeFailed(f"HTTP GET http://{host}:{port}{path} failed: {e}") from e
    finally:
        conn.close()
    return {
        "url": f"http://{host}:{port}{path}",
        "status": resp.status,
        "body": body.decode("utf-8", "replace")[:2000],
    }


def tcp_connect(host: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    """Open (and close) a TCP connection: the service answers."""
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ProbeFailed(f"TCP connection to {host}:{port} failed: {e}") from e
    return {"host": host, "port": port, "connect_ms": round((time.monotonic() - start) * 1000, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m drctl.nca.probe")
    sub = p.add_subparsers(dest="action", required=True)
    d = sub.add_parser("dhcp")
    d.add_argument("--iface", required=True)
    d.add_argument("--timeout", type=float, default=10.0)
    q = sub.add_parser("dns")
    q.add_argument("--server", required=True)
    q.add_argument("--name", required=True)
    i = sub.add_parser("ping")
    i.add_argument("--dest", required=True)
    i.add_argument("--count", type=int, default=3)
    h = sub.add_parser("http")
    h.add_argument("--host", required=True)
    h.add_argument("--port", type=int, default=80)
    h.add_argument("--path", default="/")
    t = sub.add_parser("tcp")
    t.add_argument("--host", required=True)
    t.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    try:
        if args.action == "dhcp":
            out = dhcp_lease(args.iface, args.timeout)
        elif args.action == "dns":
            out = dns_query(args.server, args.name)
        elif args.action == "ping":
            out = ping(args.dest, args.count)
        elif args.action == "tcp":
            out = tcp_connect(args.host, args.port)
        else:
            out = http_get(args.host, args.port, args.path)
    except (ProbeFailed, OSError) as e:
        print(json.dumps({"error": str(e)}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
