"""A small synchronous client for QEMU's two JSON sockets: the monitor (QMP) and the guest agent (QGA).

Both speak one JSON object per message over a Unix socket. QMP greets, needs
``qmp_capabilities`` and interleaves asynchronous events with the replies; QGA does not greet, and
a reply to an earlier, abandoned command may still be queued, so a session starts with
``guest-sync-delimited`` (a 0xFF byte, then the echo of a random id) to drop whatever came before.

Why not the ``qemu.qmp`` package: it is asyncio-only (the agent's job is synchronous), speaks QMP
but not the guest agent's sync handshake, and what the agent needs is a request/reply loop of
about a hundred lines.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from pathlib import Path
from typing import Any

from drctl.errors import EXIT_LOCAL_IO, DrctlError

log = logging.getLogger(__name__)

MAX_MESSAGE = 16 * 1024 * 1024  # a reply larger than this is not one QEMU sends


class QemuControlError(DrctlError):
    """QEMU's monitor (QMP) or guest agent (QGA) could not be reached or refused a command."""

    exit_code = EXIT_LOCAL_IO


class _JsonSocket:
    """One JSON message per ``\\n``-terminated line, over a connected Unix socket."""

    def __init__(self, path: Path, what: str, timeout: float) -> None:
        self.path, self.what = Path(path), what
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(self.path))
        except OSError as e:
            self.sock.close()
            raise QemuControlError(
                f"cannot connect to the {what} socket {self.path}: {e.strerror or e}; is the VM running "
                f"with this socket (QEMU's -qmp / -chardev options), and is the path in the agent config right?"
            ) from e
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as e:
            raise QemuControlError(f"the {self.what} socket {self.path} closed while sending: {e}") from e

    def read_raw_line(self, deadline: float) -> bytes:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QemuControlError(f"the {self.what} at {self.path} did not answer in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError as e:
                raise QemuControlError(f"the {self.what} at {self.path} did not answer in time") from e
            except OSError as e:
                raise QemuControlError(f"reading from the {self.what} socket {self.path} failed: {e}") from e
            if not data:
                raise QemuControlError(f"the {self.what} at {self.path} closed the connection")
            self._buf += data
            if len(self._buf) > MAX_MESSAGE:
                raise QemuControlError(f"the {self.what} at {self.path} sent an oversized message")
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def read(self, deadline: float) -> dict[str, Any]:
        line = self.read_raw_line(deadline)
        try:
            msg = json.loads(line)
        except ValueError as e:
            raise QemuControlError(f"the {self.what} at {self.path} sent something that is not JSON") from e
        if not isinstance(msg, dict):
            raise QemuControlError(f"the {self.what} at {self.path} sent a non-object message")
        return msg


def _reply(msg: dict[str, Any], what: str, command: str) -> Any:
    if "error" in msg:
        err = msg["error"] if isinstance(msg["error"], dict) else {}
        raise QemuControlError(
            f"{what} refused {command}: {err.get('class', '?')}: {err.get('desc', msg['error'])}"
        )
    return msg.get("return")


class Qmp:
    """A QMP session (the VM's monitor). Events that arrive are kept in :attr:`events`."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.conn = _JsonSocket(path, "QEMU monitor (QMP)", timeout)
        self.events: list[dict[str, Any]] = []
        try:
            greeting = self.conn.read(time.monotonic() + timeout)
            if "QMP" not in greeting:
                raise QemuControlError(f"{path} is not a QMP socket (no QMP greeting)")
            self.command("qmp_capabilities")
        except BaseException:
            self.conn.close()
            raise

    def command(
        self, name: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Run ``name`` with ``arguments``; its ``return`` value, or :class:`QemuControlError`."""
        msg: dict[str, Any] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.conn.send(msg)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self.conn.read(deadline)
            if "event" in reply:
                self.events.append(reply)
                continue
            return _reply(reply, "QEMU", name)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GuestAgent:
    """A session with the QEMU guest agent inside the VM (through its virtio-serial socket)."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.conn = _JsonSocket(path, "QEMU guest agent (QGA)", timeout)
        try:
            self._sync()
        except BaseException:
            self.conn.close()
            raise

    def _sync(self) -> None:
        token = random.randrange(1, 2**31)
        self.conn.send({"execute": "guest-sync-delimited", "arguments": {"id": token}})
        deadline = time.monotonic() + self.timeout
        # Skip everything up to the 0xFF delimiter, then replies until the one echoing our id.
        while True:
            line = self.conn.read_raw_line(deadline)
            if b"\xff" in line:
                self.conn._buf = line.rsplit(b"\xff", 1)[1] + b"\n" + self.conn._buf
                break
        while True:
            msg = self.conn.read(deadline)
            if msg.get("return") == token:
                return

    def command(
        self, name: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Run ``name`` in the guest with ``arguments``; its ``return`` value."""
        msg: dict[str, Any] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.conn.send(msg)
        return _reply(self.conn.read(time.monotonic() + (timeout or self.timeout)), "the guest agent", name)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> GuestAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
