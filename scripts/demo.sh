#!/usr/bin/env bash
# make demo: a private vswitchd, the frontend/backend example, and who reaches whom.
#   web on frontend; api on frontend and backend; db on backend.
# The daemon runs in a namespace standing in for the host (vsdemo-host: its host port
# vswitch0 and routes live there), and a published port is fetched from that "host".
# Everything lives in namespaces this script creates and removes; nothing touches the
# host's interfaces, addresses or resolver.
set -euo pipefail
BIN=${1:-target/release}
WORK=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
SOCK=$WORK/vswitchd.sock
CTL=("$BIN/vswitchctl" --socket "$SOCK")
DAEMON=
HOSTNS=vsdemo-host
HOST=(nsenter "--net=/run/netns/$HOSTNS" --)
WEBSRV=

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

cleanup() {
  set +e
  say "cleaning up"
  [ -n "$WEBSRV" ] && kill "$WEBSRV" 2>/dev/null
  for s in web api db "$HOSTNS"; do "${CTL[@]}" sandbox rm -f "$s" >/dev/null 2>&1; done
  for n in frontend backend; do "${CTL[@]}" network rm "$n" >/dev/null 2>&1; done
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  ip netns del "$HOSTNS" 2>/dev/null
  rm -rf "$WORK"
  echo "done: daemon stopped, namespaces and links removed"
}

if [ "$(id -u)" != 0 ]; then echo "make demo needs root (namespaces, veth, AF_XDP)"; exit 1; fi
for s in web api db; do
  if ip netns list | awk '{print $1}' | grep -qx "$s"; then
    echo "a network namespace named $s already exists; remove it (ip netns del $s) and rerun"; exit 1
  fi
done
trap cleanup EXIT
ip netns add "$HOSTNS" && ip -n "$HOSTNS" link set lo up

say "starting vswitchd (1 worker, adaptive polling, state in $WORK)"
"${HOST[@]}" "$BIN/vswitchd" --socket "$SOCK" --state-dir "$WORK/state" --workers 1 --log-level warn \
  --metrics-addr 127.0.0.1:9477 &
DAEMON=$!
for _ in $(seq 100); do "${CTL[@]}" network ls >/dev/null 2>&1 && break; sleep 0.1; done
run "${CTL[@]}" network ls

say "two user networks"
run "${CTL[@]}" network create --subnet 172.30.1.0/24 frontend >/dev/null
run "${CTL[@]}" network create --subnet 172.30.2.0/24 backend >/dev/null
say "web on frontend, db on backend, api on both"
run "${CTL[@]}" sandbox create --network frontend -p 8080:80 web >/dev/null
run "${CTL[@]}" sandbox create --network frontend api >/dev/null
run "${CTL[@]}" network connect backend api
run "${CTL[@]}" sandbox create --network backend db >/dev/null
run "${CTL[@]}" sandbox ls
ip_of() { "${CTL[@]}" --format json sandbox inspect "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['Networks']['$2']['IPAddress'])"; }
WEB=$(ip_of web frontend); API_F=$(ip_of api frontend); API_B=$(ip_of api backend); DB=$(ip_of db backend)
echo "web=$WEB  api=$API_F (frontend), $API_B (backend)  db=$DB"

check() { # from to expect
  if ip netns exec "$1" ping -c 2 -i 0.2 -W 1 -q "$2" >/dev/null 2>&1; then got=reaches; else got="cannot reach"; fi
  printf '  %-4s %-13s %-12s (%s)\n' "$1" "$got" "$2" "$([ "$got" = "$3" ] && echo expected || echo UNEXPECTED)"
  [ "$got" = "$3" ]
}
say "who reaches whom (ping through the userspace switch)"
ok=0
check web "$API_F" reaches || ok=1
check api "$DB" reaches || ok=1
check api "$WEB" reaches || ok=1
check web "$DB" "cannot reach" || ok=1
check web 172.30.1.1 reaches || ok=1

say "web serves HTTP on :80, published as 8080: the host fetches it on its loopback"
ip netns exec web python3 -m http.server 80 >/dev/null 2>&1 &
WEBSRV=$!
run "${CTL[@]}" port web
got=
for _ in $(seq 50); do got=$("${HOST[@]}" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ || true); [ "$got" = 200 ] && break; sleep 0.1; done
printf '$ curl http://127.0.0.1:8080/   (on the host)\n  HTTP %s (%s)\n' "$got" "$([ "$got" = 200 ] && echo expected || echo UNEXPECTED)"
[ "$got" = 200 ] || ok=1
got=$("${HOST[@]}" curl -s -o /dev/null -w '%{http_code}' "http://$WEB/" || true)
printf '$ curl http://%s/   (on the host, through vswitch0)\n  HTTP %s (%s)\n' "$WEB" "$got" "$([ "$got" = 200 ] && echo expected || echo UNEXPECTED)"
[ "$got" = 200 ] || ok=1

say "names resolve through the embedded DNS at the gateway"
run ip netns exec api getent hosts web
[ "$(ip netns exec api getent hosts web | awk '{print $1}')" = "$WEB" ] || ok=1

say "what the switch learned and counted"
run "${CTL[@]}" fdb frontend
run "${CTL[@]}" stats

say "the same counters for Prometheus (a sample of GET http://127.0.0.1:9477/metrics)"
"${HOST[@]}" curl -s http://127.0.0.1:9477/metrics | grep -E '^vswitch_(port_(rx|tx)_packets_total|control_requests_total|fdb_entries)' | grep -v '(host port)\|trunk' | head -12
"${HOST[@]}" curl -s -o /dev/null -w 'GET /healthz: HTTP %{http_code}\n' http://127.0.0.1:9477/healthz
exit $ok
