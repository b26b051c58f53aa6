#!/usr/bin/env bash
# Start OpenStack Swift (account, container, object, proxy with s3api + tempauth) and memcached
# as plain processes bound to 127.0.0.1, state under $DRCTL_SWIFT_STATE (default .state/swift in
# the repository). Idempotent: a healthy running Swift is left as it is.
#
#   Swift API: http://127.0.0.1:8080/auth/v1.0 (X-Storage-User test:tester, X-Storage-Pass testing)
#   S3 API:    http://127.0.0.1:8080 path-style, access key test:tester, secret testing
#   env file:  $DRCTL_SWIFT_STATE/env (source it to point boto3 / drctl at Swift)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE="${DRCTL_SWIFT_STATE:-$REPO/.state/swift}"
PROXY_PORT="${DRCTL_SWIFT_PORT:-8080}"
OBJECT_PORT="${DRCTL_SWIFT_OBJECT_PORT:-6200}"
CONTAINER_PORT="${DRCTL_SWIFT_CONTAINER_PORT:-6201}"
ACCOUNT_PORT="${DRCTL_SWIFT_ACCOUNT_PORT:-6202}"
MEMCACHED_PORT="${DRCTL_SWIFT_MEMCACHED_PORT:-11212}"
PY=/usr/bin/python3   # Debian's python: the swift packages live there, not in .venv
ENDPOINT="http://127.0.0.1:$PROXY_PORT"
SERVERS=(account container object proxy)

t0=$(date +%s%N)
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
healthy() { curl -sf -m 2 "$ENDPOINT/healthcheck" >/dev/null 2>&1; }

all_alive=1
for s in "${SERVERS[@]}" memcached; do alive "$STATE/run/$s.pid" || all_alive=0; done
if [ $all_alive -eq 1 ] && healthy; then
    echo "swift: already running at $ENDPOINT (state $STATE)"
    exit 0
fi
# Something is half up (a crash, a reboot): stop what is left, then start cleanly.
"$HERE/stop.sh" >/dev/null 2>&1 || true

for cmd in swift-ring-builder swift-proxy-server memcached curl; do
    command -v "$cmd" >/dev/null || { echo "swift: $cmd not found: run bash .ci/swift/install.sh" >&2; exit 16; }
done
port_busy() { ss -Hltn "sport = :$1" | grep -q .; }
for p in "$PROXY_PORT" "$OBJECT_PORT" "$CONTAINER_PORT" "$ACCOUNT_PORT" "$MEMCACHED_PORT"; do
    if port_busy "$p"; then
        echo "swift: port 127.0.0.1:$p is already in use (ss -ltnp shows by what); set DRCTL_SWIFT_*PORT" >&2
        exit 14
    fi
done

mkdir -p "$STATE"/{etc,node/d1,cache,run,log}
render() {
    sed -e "s|@STATE@|$STATE|g" -e "s|@PROXY_PORT@|$PROXY_PORT|g" -e "s|@OBJECT_PORT@|$OBJECT_PORT|g" \
        -e "s|@CONTAINER_PORT@|$CONTAINER_PORT|g" -e "s|@ACCOUNT_PORT@|$ACCOUNT_PORT|g" \
        -e "s|@MEMCACHED_PORT@|$MEMCACHED_PORT|g" "$1" > "$2"
}
for f in swift.conf proxy-server.conf account-server.conf container-server.conf object-server.conf; do
    render "$HERE/$f" "$STATE/etc/$f"
done

# Rings: one device, one replica, rebuilt when the ports changed (the ring records them).
ring_ports="$ACCOUNT_PORT $CONTAINER_PORT $OBJECT_PORT"
if [ ! -f "$STATE/etc/object.ring.gz" ] || [ "$(cat "$STATE/etc/ring.ports" 2>/dev/null)" != "$ring_ports" ]; then
    ( cd "$STATE/etc"
      rm -f ./*.builder ./*.ring.gz
      for kp in "account:$ACCOUNT_PORT" "container:$CONTAINER_PORT" "object:$OBJECT_PORT"; do
          kind="${kp%%:*}"; port="${kp##*:}"
          swift-ring-builder "$kind.builder" create 8 1 1 >/dev/null
          swift-ring-builder "$kind.builder" add "r1z1-127.0.0.1:$port/d1" 100 >/dev/null
          swift-ring-builder "$kind.builder" rebalance >/dev/null 2>&1 || true
      done )
    echo "$ring_ports" > "$STATE/etc/ring.ports"
fi

memcached -d -u root -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -P "$STATE/run/memcached.pid"
for s in account container object proxy; do
    setsid nohup "$PY" "/usr/bin/swift-$s-server" "$STATE/etc/$s-server.conf" -v \
        >>"$STATE/log/$s.log" 2>&1 < /dev/null &
    echo $! > "$STATE/run/$s.pid"
done

# Healthy = proxy answers, tempauth issues a token, and the account answers through it.
deadline=$(( $(date +%s) + 60 ))
until healthy && token=$(curl -sf -m 5 -o /dev/null -D - -H "X-Storage-User: test:tester" \
        -H "X-Storage-Pass: testing" "$ENDPOINT/auth/v1.0" | tr -d '\r' | sed -n 's/^[Xx]-[Aa]uth-[Tt]oken: //p') \
      && [ -n "$token" ] && curl -sf -m 5 -o /dev/null -X HEAD -H "X-Auth-Token: $token" "$ENDPOINT/v1/AUTH_test"; do
    for s in "${SERVERS[@]}"; do
        if ! alive "$STATE/run/$s.pid"; then
            echo "swift: $s-server exited; see $STATE/log/$s.log:" >&2; tail -20 "$STATE/log/$s.log" >&2; exit 14
        fi
    done
    if [ "$(date +%s)" -ge $deadline ]; then
        echo "swift: not healthy after 60 s at $ENDPOINT; logs in $STATE/log" >&2; exit 14
    fi
    sleep 0.2
done

cat > "$STATE/env" <<ENV
# Swift's S3 API (s3api + tempauth) started by .ci/swift/start.sh
export DRCTL_SWIFT_ENDPOINT=$ENDPOINT
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ACCESS_KEY_ID=test:tester
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
export DRCTL_S3_ADDRESSING=path
ENV
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
printf 'swift: running at %s (S3 and Swift API), state %s, started in %d.%03d s\n' "$ENDPOINT" "$STATE" $((ms / 1000)) $((ms % 1000))
