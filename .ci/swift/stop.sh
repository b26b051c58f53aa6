#!/usr/bin/env bash
# Stop what .ci/swift/start.sh started (by pid file: SIGTERM, then SIGKILL after 10 s). Data stays.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE="${DRCTL_SWIFT_STATE:-$REPO/.state/swift}"
stopped=()
for s in proxy object container account memcached; do
    pidfile="$STATE/run/$s.pid"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        # The swift servers are process-group leaders (setsid): their workers go with them.
        if [ "$s" = memcached ]; then kill -TERM "$pid" 2>/dev/null; else kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"; fi
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            if [ "$s" = memcached ]; then kill -KILL "$pid"; else kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; fi
        fi
        stopped+=("$s")
    fi
    rm -f "$pidfile"
done
echo "swift: stopped ${stopped[*]:-nothing (not running)}"
