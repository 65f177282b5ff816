#!/usr/bin/env bash
# Data-plane benchmark (root): new connections/s and one bulk TCP stream, client → node → 3 nginx backends,
# through svcnet's nftables rules (10 and 10,000 Services), iptables rules, the userspace proxy,
# HAProxy (tcp mode, round-robin) and direct. Ratios are what to compare; all in one run.
# Usage: bench/dataplane.sh   (env: DUR=10 seconds per run, ROUNDS=3 rounds, medians printed;
#   BIN=the bench_sync example; PREV=bench_sync of a previous version adds a userspace row;
#   ONLY="direct nft10 ..." runs a subset of CASES below)
set -euo pipefail
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
PREV=${PREV:-}
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

setup() { # [free]: the client may reuse its TIME_WAIT ports
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
  if [ "${1:-}" = free ]; then # see the *_free cases below
    ip netns exec "$C" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
  fi
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
cpu_idle() { awk '/^cpu / {t=0; for (i=2; i<=9; i++) t+=$i; print t, $5}' /proc/stat; } # all CPUs: total, idle
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of a process (all threads)
# conn_rate of $2; appends the proxy process $1's CPU µs per connection to $TMP/cpu_$3
# (a file: this runs in a command substitution's subshell).
conn_rate_cpu() {
  local t0 rate t1 s0 s1
  s0=$(cpu_idle); t0=$(ticks "$1"); rate=$(conn_rate "$2"); t1=$(ticks "$1"); s1=$(cpu_idle)
  python3 -c "import os;print(round(($t1-$t0)*1e6/os.sysconf('SC_CLK_TCK')/max(1,${rate:-0}*$DUR)))" >>"$TMP/cpu_$3"
  python3 -c "a,b='$s0'.split(),'$s1'.split();print(round(100*(int(b[1])-int(a[1]))/max(1,int(b[0])-int(a[0]))))" >>"$TMP/idle_$3"
  echo "$rate"
}
bulk() { # ip port → Gbit/s of one stream
  ip netns exec "$C" iperf3 -c "$1" -p "$2" -t "$DUR" -f g 2>/dev/null | awk '/sender/ {print $(NF-3)}'
}

declare -A R
vip() { python3 -c "import ipaddress;print(ipaddress.ip_address('10.96.0.10')+$1)"; }

haproxy_up() {
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
}

userspace_up() { # the bench_sync binary to run
  "$1" install "$N" userspace 10 >"$TMP/us.log" 2>&1 &
  PIDS+=($!)
  sleep 1
}

# One case on fresh namespaces (NAT tuples in TIME_WAIT from one run would slow the next);
# its samples are appended to R[...], space-separated.
# The *_free cases give the client tcp_tw_reuse=1 and ports 1024-65000. Who closes first
# holds TIME_WAIT: behind HAProxy the response and its FIN arrive apart, so wrk closes
# first and fills its ports toward the one service address with TIME_WAIT sockets, and
# its connect() spends longer finding a free port; the userspace proxy sends the FIN with
# the last bytes, wrk closes second and the TIME_WAIT sockets sit on the node. With the
# client's ports unconstrained the proxies, not the client, set the rate.
run_case() {
  case $1 in *_free) setup free ;; *) setup ;; esac
  case $1 in
    direct) R[direct_conn]+=" $(conn_rate http://10.244.1.2:5000/)"; R[direct_bulk]+=" $(bulk 10.244.1.2 5201)" ;;
    nft10) "$BIN" install "$N" nftables 10 >/dev/null; R[nft10]+=" $(conn_rate http://10.96.0.10/)" ;;
    nft10k_first) "$BIN" install "$N" nftables 10000 >/dev/null; R[nft10k_first]+=" $(conn_rate http://10.96.0.10/)" ;;
    nft10k_last) "$BIN" install "$N" nftables 10000 >/dev/null; R[nft10k_last]+=" $(conn_rate "http://$(vip 9999)/")" ;;
    ipt10) "$BIN" install "$N" iptables-legacy 10 >/dev/null; R[ipt10]+=" $(conn_rate "http://$(vip 9)/")" ;;
    ipt10k_last) "$BIN" install "$N" iptables-legacy 10000 >/dev/null; R[ipt10k_last]+=" $(conn_rate "http://$(vip 9999)/")" ;;
    us) userspace_up "$BIN"; R[us_conn]+=" $(conn_rate_cpu "${PIDS[-1]}" http://10.96.0.10/ us)"; R[us_bulk]+=" $(bulk 10.96.0.10 5201)" ;;
    prev) userspace_up "$PREV"; R[prev_conn]+=" $(conn_rate_cpu "${PIDS[-1]}" http://10.96.0.10/ prev)"; R[prev_bulk]+=" $(bulk 10.96.0.10 5201)" ;;
    us_free) userspace_up "$BIN"; R[us_free]+=" $(conn_rate_cpu "${PIDS[-1]}" http://10.96.0.10/ us_free)" ;;
    ha_free) haproxy_up; R[ha_free]+=" $(conn_rate_cpu "$(cat "$TMP/haproxy.pid")" http://10.96.0.10/ ha_free)" ;;
    ha) haproxy_up; R[ha_conn]+=" $(conn_rate_cpu "$(cat "$TMP/haproxy.pid")" http://10.96.0.10/ ha)"; R[ha_bulk]+=" $(bulk 10.96.0.10 5201)" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
  esac
  teardown
  sleep 1 # the kernel tears namespaces down in the background: let it finish first
}

CASES="direct nft10 nft10k_first nft10k_last ipt10 ipt10k_last us ha us_free ha_free"
if [ -n "$PREV" ]; then CASES="$CASES prev"; fi
CASES=${ONLY:-$CASES}
# CPU steal (time the hypervisor gave other guests) over the whole run: the
# ratios hold up at any steal, the absolute rates only at similar steal.
cpu_line() { awk '/^cpu / {t=0; for (i=2; i<=9; i++) t+=$i; print t, $9}' /proc/stat; }
read -r CPU0_TOTAL CPU0_STEAL < <(cpu_line)
for round in $(seq "$ROUNDS"); do
  # Rotate the order each round, so no case always runs right after the same one.
  set -- $CASES
  for _ in $(seq $(( (round - 1) % $# ))); do set -- "${@:2}" "$1"; done
  for c in "$@"; do run_case "$c"; done
done

med() { python3 -c "import statistics,sys;v=[float(x) for x in sys.argv[1:]];print(f'{statistics.median(v):g}' if v else '')" $1; }
ratio() { python3 -c "a,b=float('$1' or 0),float('$2' or 0);print(f'{a/b:.2f}' if b else 'n/a')"; }
declare -A M
for k in "${!R[@]}"; do M[$k]=$(med "${R[$k]}"); done
row() { # label, key, key of the baseline, what the ratio is of
  [ -n "${M[$2]:-}" ] || return 0
  echo "$1 | ${M[$2]} | $(ratio "${M[$2]}" "${M[$3]:-}")$4 | ${R[$2]# }"
}
read -r CPU1_TOTAL CPU1_STEAL < <(cpu_line)
echo "medians of $ROUNDS rounds, ${DUR} s each; CPU steal during the run: $(( 100 * (CPU1_STEAL - CPU0_STEAL) / (CPU1_TOTAL - CPU0_TOTAL + 1) ))%"
echo "path | new conn/s | ratio | samples"
row "direct" direct_conn direct_conn ""
row "nftables, 10 Services" nft10 direct_conn " of direct"
row "nftables, 10,000 Services (first)" nft10k_first nft10 " of 10"
row "nftables, 10,000 Services (last)" nft10k_last nft10 " of 10"
row "iptables-legacy, 10 Services" ipt10 direct_conn " of direct"
row "iptables-legacy, 10,000 Services (last)" ipt10k_last ipt10 " of 10"
row "userspace" us_conn ha_conn " of HAProxy"
row "userspace, previous version" prev_conn ha_conn " of HAProxy"
row "HAProxy" ha_conn direct_conn " of direct"
row "userspace, client ports unconstrained" us_free ha_free " of HAProxy (same)"
row "HAProxy, client ports unconstrained" ha_free direct_conn " of direct"
echo
echo "proxy process CPU per connection (µs), median | samples | idle CPU over the run (%), median | samples"
for k in us prev ha us_free ha_free; do
  [ -s "$TMP/cpu_$k" ] && echo "$k | $(med "$(cat "$TMP/cpu_$k")") | $(tr '\n' ' ' <"$TMP/cpu_$k")| $(med "$(cat "$TMP/idle_$k")") | $(tr '\n' ' ' <"$TMP/idle_$k")"
done
echo
echo "path | 1 TCP stream Gbit/s | ratio to direct | samples"
row "direct" direct_bulk direct_bulk ""
row "userspace" us_bulk direct_bulk ""
row "userspace, previous version" prev_bulk direct_bulk ""
row "HAProxy" ha_bulk direct_bulk ""
