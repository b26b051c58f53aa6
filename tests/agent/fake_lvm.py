"""A boundary fake of the LVM tools (the host kernel has no device-mapper): ``lvs``, ``lvcreate``
and ``lvremove`` scripts on PATH that log every call and keep the "snapshot" as a copy of the
origin file. Switches (files in the state directory): ``overflow`` (the snapshot reports invalid),
``invalidated`` (with ``overflow``: reading the snapshot fails, as the kernel's invalidated one does),
``fail-lvcreate``, ``fail-lvremove``. The real tools run in the guest test (agent-guest branch)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

_LVS = r"""#!/bin/sh
echo "lvs $*" >> "$FAKE_LVM/calls.log"
for last; do :; done
case "$*" in
  *vg_name,lv_name*) echo "  vg0|$(basename "$last")" ;;
  *lv_snapshot_invalid,snap_percent*)
    if [ -e "$FAKE_LVM/overflow" ]; then echo "  snapshot invalid|100.00"; else echo "  |12.50"; fi ;;
  *lv_path*) echo "  $FAKE_LVM/dev/$last" ;;
  *) echo "fake lvs: unexpected $*" >&2; exit 3 ;;
esac
"""

_LVCREATE = r"""#!/bin/sh
echo "lvcreate $*" >> "$FAKE_LVM/calls.log"
if [ -e "$FAKE_LVM/fail-lvcreate" ]; then
  echo '  Volume group "vg0" has insufficient free space (0 extents): 256 required.' >&2; exit 5
fi
name=""; origin=""
while [ $# -gt 0 ]; do
  case "$1" in -n) name="$2"; shift ;; -L) shift ;; --snapshot) ;; *) origin="$1" ;; esac; shift
done
mkdir -p "$FAKE_LVM/dev/vg0"
if [ -e "$FAKE_LVM/invalidated" ]; then
  mkdir "$FAKE_LVM/dev/vg0/$name"  # reads fail (EISDIR) as an invalidated snapshot's I/O errors do
else
  cp "$origin" "$FAKE_LVM/dev/vg0/$name"
fi
"""

_LVREMOVE = r"""#!/bin/sh
echo "lvremove $*" >> "$FAKE_LVM/calls.log"
if [ -e "$FAKE_LVM/fail-lvremove" ]; then echo '  Logical volume in use.' >&2; exit 5; fi
for last; do :; done
rm -rf "$FAKE_LVM/dev/$last"
"""


@dataclass
class FakeLvm:
    state: Path

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.log"
        return [line.split() for line in log.read_text().splitlines()] if log.exists() else []

    def switch(self, name: str) -> None:
        (self.state / name).touch()

    def snapshots(self) -> list[str]:
        d = self.state / "dev" / "vg0"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLvm:
    state = tmp_path / "fake-lvm"
    bindir = state / "bin"
    bindir.mkdir(parents=True)
    for name, text in (("lvs", _LVS), ("lvcreate", _LVCREATE), ("lvremove", _LVREMOVE)):
        path = bindir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_LVM", str(state))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return FakeLvm(state)
