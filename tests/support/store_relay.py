"""Let the guests of a sandbox reach an object store on the host's loopback, and nothing else.

Two small TCP relays joined by a Unix socket (a path crosses network namespaces, a TCP connection
does not): inside the sandbox namespace one listens on a bridge's gateway address and forwards each
connection to the socket; on the host the other accepts on the socket and connects to
``127.0.0.1:<port>``. The namespace keeps no route out: only this one port is carried.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parents[2])


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)


def _serve(server: socket.socket, connect: Callable[[], socket.socket]) -> None:
    while True:
        client, _ = server.accept()
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _unix(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def main(argv: list[str]) -> None:
    if argv[0] == "listen-tcp":  # in the namespace: IP:PORT -> the unix socket
        ip, port, path = argv[1], int(argv[2]), argv[3]
        _serve(socket.create_server((ip, port)), lambda: _unix(path))
    else:  # on the host: the unix socket -> 127.0.0.1:PORT
        path, port = argv[1], int(argv[2])
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(64)
        _serve(srv, lambda: socket.create_connection(("127.0.0.1", port)))


@contextlib.contextmanager
def store_relay(sandbox: Any, gateway_ip: str, host_port: int, guest_port: int, sock: Path) -> Iterator[None]:
    """``gateway_ip:guest_port`` inside ``sandbox``'s namespace reaches ``127.0.0.1:host_port``."""
    me = [sys.executable, "-m", "tests.support.store_relay"]
    host = subprocess.Popen(
        [*me, "listen-unix", str(sock), str(host_port)], env={**os.environ, "PYTHONPATH": ROOT}
    )
    inside = None
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert host.poll() is None and time.monotonic() < deadline, "the host relay did not start"
            time.sleep(0.05)
        inside = sandbox.netns.spawn(
            [*me, "listen-tcp", gateway_ip, str(guest_port), str(sock)],
            log_path=None,
            env={"PYTHONPATH": ROOT},
        )
        yield
    finally:
        for p in (inside, host):
            if p is not None:
                p.kill()
                p.wait()
        sock.unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
