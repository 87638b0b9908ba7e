#!/bin/bash
# groups.sh — ordered multicast throughput and latency of corral's group
# messaging, side by side with Corosync CPG in the same run.
#
# corral: BenchmarkGroupMulticast and BenchmarkGroupLatency in cmd/corral
# start three agent processes on this machine (127.0.0.1-3, default timings)
# with a member on every node; N messages of 100 B, 1 KB and 10 KB from one
# sender and from a sender on every node, each delivered at all three
# members, every one on a majority's disk (fsync) before delivery. msg/s
# counts messages, not deliveries. The senders=1/members=1 runs are shaped
# as the anchor's cpgbench-lite: one process on node 1 joins the group,
# sends and counts its own deliveries. Latency: send to delivery at every
# member, at half the maximum rate. Each multicast run also reports the
# CPU time of the three agents and of the benchmark's clients per message
# (agent-cpu-us/msg, client-cpu-us/msg: utime+stime from /proc/PID/stat)
# and the agents' disk writes per message (disk-B/msg: write_bytes from
# /proc/PID/io); on this shared machine they are steadier than msg/s.
# Corosync: ../shared/anchors/corosync-3node.sh (three corosync in network
# namespaces, cpgbench-lite from node 1, agreed order, nothing on disk),
# after the agents have stopped; then the ratios.
#
# batched-% is the share of messages that left in GROUP_SEND_BATCH requests
# (client protocol version 5; 0 against an older agent).
#
# Env: N (messages per run, default 50000), LAT_N (default 20000),
# ANCHORS (anchor dir), ANCHOR=0 skips Corosync. Run as root for the anchor.
# BASE=/path/to/corral (another build of the agent, e.g. main's) first runs
# the multicast benchmark against it, same clients, for an A/B in one run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
N=${N:-50000}
LAT_N=${LAT_N:-20000}
ANCHORS=${ANCHORS:-$root/../shared/anchors}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$root"
if [ -n "${BASE:-}" ]; then
  echo "== corral: BenchmarkGroupMulticast against BASE=$BASE, ${N} messages per run"
  CORRAL_BENCH_BINARY="$BASE" go test -run '^$' -bench 'BenchmarkGroupMulticast' -benchtime "${N}x" -timeout 60m ./cmd/corral | tee "$out/base"
fi
echo "== corral: BenchmarkGroupMulticast, ${N} messages per run"
go test -run '^$' -bench 'BenchmarkGroupMulticast' -benchtime "${N}x" -timeout 60m ./cmd/corral | tee "$out/corral"
echo "== corral: BenchmarkGroupLatency at half the maximum rate, ${LAT_N} messages"
go test -run '^$' -bench 'BenchmarkGroupLatency' -benchtime "${LAT_N}x" -timeout 60m ./cmd/corral | tee -a "$out/corral"
if [ "${ANCHOR:-1}" = 0 ]; then exit 0; fi
echo "== Corosync CPG (anchor)"
"$ANCHORS/corosync-3node.sh" | tee "$out/corosync"
echo "== ratios (corral msg/s / corosync msg/s)"
echo "   anchor-shaped: one process on node 1 joins, sends and counts its deliveries, as cpgbench-lite does;"
echo "   3 members: a member on every node, one sender (and a sender on every node)"
for s in 100 1000 10000; do
  k=$(awk -v s="$s" '/corosync cpg/ && $0 ~ "size="s" " {for (i=1;i<=NF;i++) if ($i ~ /^rate=/) {sub("rate=","",$i); print $i}}' "$out/corosync")
  rate() { awk -v n="$1" '$1 ~ "^BenchmarkGroupMulticast/"n"-" {for (i=1;i<=NF;i++) if ($(i+1)=="msg/s") print $i}' "$out/corral"; }
  c1=$(rate "size=$s/senders=1/members=1")
  c=$(rate "size=$s/senders=1")
  c3=$(rate "size=$s/senders=3")
  awk -v s="$s" -v c1="$c1" -v c="$c" -v c3="$c3" -v k="$k" 'BEGIN{ if (k > 0) printf "%6d B: corosync %s msg/s; corral anchor-shaped %s (%.1fx), 3 members %s (%.1fx), 3 senders %s (%.1fx)\n", s, k, c1, c1/k, c, c/k, c3, c3/k }'
done
