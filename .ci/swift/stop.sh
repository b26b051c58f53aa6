#!/usr/bin/env bash
# Stop what .ci/swift/start.sh started, by pid file: SIGTERM to every server at once (each swift
# server is a process-group leader, its workers go with it), SIGKILL what is left after 10 s.
# Data stays in the state dir.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE="${DRCTL_SWIFT_STATE:-$REPO/.state/swift}"
NAMES=(proxy object container account memcached)

alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
signal() {  # name pid sig
    if [ "$1" = memcached ]; then kill "-$3" "$2" 2>/dev/null; else kill "-$3" -- "-$2" 2>/dev/null || kill "-$3" "$2" 2>/dev/null; fi
}
declare -A pids=()
for s in "${NAMES[@]}"; do
    pidfile="$STATE/run/$s.pid"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if alive "$pid"; then pids[$s]=$pid; signal "$s" "$pid" TERM; fi
    rm -f "$pidfile"
done
for _ in $(seq 50); do
    left=0
    for s in "${!pids[@]}"; do alive "${pids[$s]}" && left=1; done
    [ $left -eq 0 ] && break
    sleep 0.2
done
for s in "${!pids[@]}"; do alive "${pids[$s]}" && signal "$s" "${pids[$s]}" KILL; done
stopped="${!pids[*]}"
echo "swift: stopped ${stopped:-nothing (not running)}"
