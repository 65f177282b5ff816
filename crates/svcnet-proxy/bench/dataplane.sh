#!/usr/bin/env bash
# Data-plane benchmark (root): new connections/s and one bulk TCP stream, client → node → 3 nginx backends,
# through svcnet's nftables rules (10 and 10,000 Services), iptables rules, the userspace proxy,
# HAProxy (tcp mode, round-robin) and direct. Ratios are what to compare; all in one run.
# Usage: bench/dataplane.sh   (env: DUR=10 seconds per run, BIN=path of the bench_sync example)
set -euo pipefail
DUR=${DUR:-10}
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/svcnet-target}/release/examples/bench_sync}
for tool in haproxy wrk iperf3 nginx; do
  command -v "$tool" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy wrk iperf3 nginx-light >/dev/null; break; }
done
[ -x "$BIN" ] || { echo "build first: cargo build --release -p svcnet-proxy --example bench_sync" >&2; exit 1; }

P=svcb$$
C=$P-c N=$P-n B=$P-b
TMP=$(mktemp -d)
PIDS=()
teardown() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  PIDS=()
  [ -f "$TMP/haproxy.pid" ] && kill "$(cat "$TMP/haproxy.pid")" 2>/dev/null || true
  [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
  pkill -F "$TMP/iperf.pid" 2>/dev/null || true
  for ns in "$C" "$N" "$B"; do ip netns del "$ns" 2>/dev/null || true; done
  sleep 0.3
}
trap 'teardown; rm -rf "$TMP"' EXIT

setup() {
  for ns in "$C" "$N" "$B"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip -n "$C" link add eth0 type veth peer name c0 netns "$N"
  ip -n "$B" link add eth0 type veth peer name b0 netns "$N"
  ip -n "$C" addr add 10.0.0.2/24 dev eth0; ip -n "$C" link set eth0 up
  ip -n "$N" addr add 10.0.0.1/24 dev c0; ip -n "$N" link set c0 up
  ip -n "$N" addr add 10.244.1.1/24 dev b0; ip -n "$N" link set b0 up
  for i in 2 3 4; do ip -n "$B" addr add 10.244.1.$i/24 dev eth0; done
  ip -n "$B" link set eth0 up
  ip -n "$C" route add 10.96.0.0/16 via 10.0.0.1
  ip -n "$C" route add 10.244.0.0/16 via 10.0.0.1
  ip -n "$B" route add 10.0.0.0/24 via 10.244.1.1
  ip netns exec "$N" sysctl -qw net.ipv4.ip_forward=1
  cat > "$TMP/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx.err;
events { worker_connections 4096; }
http { access_log off; server { listen 5000 reuseport backlog=4096; location / { return 200 "ok\n"; } } }
EOF
  ip netns exec "$B" nginx -c "$TMP/nginx.conf"
  ip netns exec "$B" iperf3 -s -p 5201 -D -I "$TMP/iperf.pid"
  sleep 0.5
}

conn_rate() { # url → requests/s with a new connection each
  ip netns exec "$C" wrk -t2 -c32 -d"${DUR}s" -H "Connection: close" "$1" 2>/dev/null | awk '/Requests\/sec/ {print int($2)}'
}
bulk() { # ip port → Gbit/s of one stream
  ip netns exec "$C" iperf3 -c "$1" -p "$2" -t "$DUR" -f g 2>/dev/null | awk '/sender/ {print $(NF-3)}'
}

declare -A R
vip() { python3 -c "import ipaddress;print(ipaddress.ip_address('10.96.0.10')+$1)"; }

setup
R[direct_conn]=$(conn_rate http://10.244.1.2:5000/)
R[direct_bulk]=$(bulk 10.244.1.2 5201)
teardown

setup
"$BIN" install "$N" nftables 10 >/dev/null
R[nft10]=$(conn_rate http://10.96.0.10/)
teardown

# A fresh setup per measurement: NAT tuples in TIME_WAIT from one run would slow the next.
setup
"$BIN" install "$N" nftables 10000
R[nft10k_first]=$(conn_rate http://10.96.0.10/)
teardown

setup
"$BIN" install "$N" nftables 10000
R[nft10k_last]=$(conn_rate "http://$(vip 9999)/")
teardown

setup
"$BIN" install "$N" iptables-legacy 10 >/dev/null
R[ipt10]=$(conn_rate "http://$(vip 9)/")
teardown

setup
"$BIN" install "$N" iptables-legacy 10000
R[ipt10k_last]=$(conn_rate "http://$(vip 9999)/")
teardown

setup
"$BIN" install "$N" userspace 10 >"$TMP/us.log" 2>&1 &
PIDS+=($!)
sleep 1
R[us_conn]=$(conn_rate http://10.96.0.10/)
R[us_bulk]=$(bulk 10.96.0.10 5201)
teardown

setup
ip -n "$N" addr add 10.96.0.10/32 dev lo
cat > "$TMP/haproxy.cfg" <<EOF
global
  nbthread 2
  maxconn 8000
  pidfile $TMP/haproxy.pid
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend web
  bind 10.96.0.10:80
  default_backend nginx
backend nginx
  balance roundrobin
  server a 10.244.1.2:5000
  server b 10.244.1.3:5000
  server c 10.244.1.4:5000
frontend bulk
  bind 10.96.0.10:5201
  default_backend iperf
backend iperf
  server a 10.244.1.2:5201
EOF
ip netns exec "$N" haproxy -D -f "$TMP/haproxy.cfg"
sleep 0.5
R[ha_conn]=$(conn_rate http://10.96.0.10/)
R[ha_bulk]=$(bulk 10.96.0.10 5201)
teardown

ratio() { python3 -c "a,b=float('$1' or 0),float('$2' or 0);print(f'{a/b:.2f}' if b else 'n/a')"; }
echo "path | new conn/s | ratio"
echo "direct | ${R[direct_conn]} | 1.00"
echo "nftables, 10 Services | ${R[nft10]} | $(ratio "${R[nft10]}" "${R[direct_conn]}")"
echo "nftables, 10,000 Services (first) | ${R[nft10k_first]} | $(ratio "${R[nft10k_first]}" "${R[nft10]}") of 10"
echo "nftables, 10,000 Services (last) | ${R[nft10k_last]} | $(ratio "${R[nft10k_last]}" "${R[nft10]}") of 10"
echo "iptables-legacy, 10 Services | ${R[ipt10]} | $(ratio "${R[ipt10]}" "${R[direct_conn]}")"
echo "iptables-legacy, 10,000 Services (last) | ${R[ipt10k_last]} | $(ratio "${R[ipt10k_last]}" "${R[ipt10]}") of 10"
echo "userspace | ${R[us_conn]} | $(ratio "${R[us_conn]}" "${R[ha_conn]}") of HAProxy"
echo "HAProxy | ${R[ha_conn]} | $(ratio "${R[ha_conn]}" "${R[direct_conn]}")"
echo
echo "path | 1 TCP stream Gbit/s | ratio to direct"
echo "direct | ${R[direct_bulk]} | 1.00"
echo "userspace | ${R[us_bulk]} | $(ratio "${R[us_bulk]}" "${R[direct_bulk]}")"
echo "HAProxy | ${R[ha_bulk]} | $(ratio "${R[ha_bulk]}" "${R[direct_bulk]}")"
