#!/usr/bin/env bash
# Cluster DNS benchmark: svcnet-dns vs NSD serving the same 10,000-Service zone on loopback,
# each pinned to core 0, dnsperf pinned to core 1, in one run. Prints queries/s, p99 and
# memory per Service, and the ratio. Not run in CI (needs root for apt-get).
set -euo pipefail

SERVICES=${SERVICES:-10000}
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-20}
OURS_PORT=${OURS_PORT:-15353}
NSD_PORT=${NSD_PORT:-15354}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/svcnet-target}

if ! command -v dnsperf >/dev/null || ! command -v nsd >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf nsd >/dev/null
fi

work=$(mktemp -d /tmp/svcnet-dns-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && cargo build -q --release -p svcnet-dns --example dns-bench-zone)
bin="$CARGO_TARGET_DIR/release/examples/dns-bench-zone"
"$bin" files "$work" "$SERVICES"

cat >"$work/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$NSD_PORT
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$work"
    database: ""
    zonelistfile: "$work/zone.list"
    pidfile: "$work/nsd.pid"
    xfrdfile: "$work/xfrd.state"
    xfrdir: "$work"
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: cluster.local
    zonefile: cluster.local.zone
EOF

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# NSD's memory per Service: RSS with the zone minus RSS with an empty zone.
head -3 "$work/cluster.local.zone" >"$work/empty.zone"
sed "s|zonefile: cluster.local.zone|zonefile: empty.zone|; s|@$NSD_PORT|@$((NSD_PORT + 1))|; s|nsd.pid|nsd-empty.pid|; s|xfrd.state|xfrd-empty.state|" \
    "$work/nsd.conf" >"$work/nsd-empty.conf"
taskset -c 0 nsd -d -c "$work/nsd-empty.conf" & pids+=($!)
taskset -c 0 nsd -d -c "$work/nsd.conf" & pids+=($!)
taskset -c 0 "$bin" serve "127.0.0.1:$OURS_PORT" "$SERVICES" >"$work/ours.log" & pids+=($!)
ours_pid=$!
sleep 3

# NSD forks a server child; sum the process group's RSS for each instance.
nsd_rss() { local total=0; for p in $(pgrep -f "nsd -d -c $1"); do total=$((total + $(rss_kb "$p"))); done; echo $total; }
nsd_full=$(nsd_rss "$work/nsd.conf")
nsd_empty=$(nsd_rss "$work/nsd-empty.conf")

run() { # port -> "qps avg_ms"
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries.txt" -l "$SECS" -c "$CLIENTS" -T 1 -q 500 2>&1 |
        awk '/Queries per second/ {q=$4} /Average Latency/ {l=$4} /Queries lost/ {lost=$3} END {printf "%s %s %s\n", q, l*1000, lost}'
}
p99() { # port -> p99 in ms, from a short verbose run
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries.txt" -l 3 -c "$CLIENTS" -T 1 -q 500 -v 2>/dev/null |
        awk '$1 == ">" {print $NF}' | sort -n | awk '{a[NR]=$1} END {if (NR) printf "%.3f\n", a[int(NR*0.99)]*1000; else print "n/a"}'
}

read -r ours_qps ours_avg ours_lost < <(run "$OURS_PORT")
read -r nsd_qps nsd_avg nsd_lost < <(run "$NSD_PORT")
ours_p99=$(p99 "$OURS_PORT")
nsd_p99=$(p99 "$NSD_PORT")
ours_rss=$(rss_kb "$ours_pid")

echo "== cluster DNS, $SERVICES Services, server on 1 core, dnsperf ($CLIENTS clients) on another, ${SECS}s =="
sed -n 1p "$work/ours.log"
printf "%-12s %12s %10s %10s %12s %10s\n" server "queries/s" "avg ms" "p99 ms" "lost" "RSS MiB"
printf "%-12s %12s %10.3f %10s %12s %10.1f\n" svcnet-dns "$ours_qps" "$ours_avg" "$ours_p99" "$ours_lost" "$(echo "$ours_rss/1024" | bc -l)"
printf "%-12s %12s %10.3f %10s %12s %10.1f\n" "$(nsd -v 2>&1 | head -1)" "$nsd_qps" "$nsd_avg" "$nsd_p99" "$nsd_lost" "$(echo "$nsd_full/1024" | bc -l)"
echo "NSD zone memory: $(( (nsd_full - nsd_empty) * 1024 / SERVICES )) B per Service (RSS with zone minus empty zone)"
echo "ratio svcnet-dns/NSD queries/s: $(echo "$ours_qps / $nsd_qps" | bc -l | cut -c1-5)"
