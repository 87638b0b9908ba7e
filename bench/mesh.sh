#!/bin/bash
# mesh.sh — routed messaging on in-process meshes (one process, TLS links
# over loopback TCP, a line of 6 nodes): throughput of Send and round trip
# of Call over 1, 2, 3 and 5 hops at 64 B, 1 KB and 64 KB, a relay's cost
# per forwarded frame, then each figure's ratio to its 1-hop value (the
# per-hop overhead); then the control traffic to converge after a cold
# start and a link flap, on the deterministic core (mesh/route, 5, 16, 64
# nodes) and on real meshes (5, 16 nodes).
#
# Benchmarks (mesh/bench_test.go, mesh/convergence_test.go,
# mesh/route/bench_test.go):
#   BenchmarkRoutedSend   msgs/s, MB/s, cpu-ns/msg (the process's CPU per
#                         frame delivered, all nodes), relay-drops
#   BenchmarkRoutedCall   ns/op = mean round trip (reply echoes the body),
#                         p50-µs, p99-µs
#   BenchmarkRelayForward ns/op and allocs/op of the relay's reader-side
#                         forwarding; cpu-ns/msg with the writer and TLS
#   BenchmarkMeshConvergence, BenchmarkConvergence  frames / messages sent
#
# Env: BENCHTIME (default 2s), COUNT (default 1), CONVERGENCE=0 skips the
# convergence part. No root. Prints the load average before and after.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BENCHTIME=${BENCHTIME:-2s}
COUNT=${COUNT:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$root"
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "== go test ./mesh -run '^\$' -bench 'RoutedSend|RoutedCall|RelayForward' -benchtime $BENCHTIME -count $COUNT"
go test ./mesh -run '^$' -bench 'RoutedSend|RoutedCall|RelayForward' -benchtime "$BENCHTIME" -count "$COUNT" -timeout 30m | tee "$out/bench"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# metric NAME UNIT: "name value" for each line of that benchmark (mean over COUNT).
metric() {
	awk -v b="$1" -v u="$2" '$1 ~ "^Benchmark"b"/" {
		name=$1; sub("-[0-9]+$","",name); sub("^Benchmark"b"/","",name)
		for (i=2;i<=NF;i++) if ($(i+1)==u) { s[name]+=$i; n[name]++ }
	} END { for (k in s) print k, s[k]/n[k] }' "$out/bench" | sort
}
# ratios NAME UNIT LABEL: each hop count's figure over the 1-hop one, per size.
ratios() {
	metric "$1" "$2" > "$out/m"
	echo "-- $3 ($1, $2; ratio to hops=1)"
	for s in 64 1024 65536; do
		awk -v s="$s" '{split($1,a,"/"); sub("hops=","",a[1]); sub("size=","",a[2]); if (a[2]==s) v[a[1]]=$2}
			END { if (!(1 in v)) exit; line=sprintf("%6d B:", s)
				for (h=1;h<=5;h++) if (h in v) line=line sprintf("  %dh %.0f (%.2fx)", h, v[h], v[h]/v[1]); print line }' "$out/m"
	done
}
echo "== per-hop overhead"
ratios RoutedSend msgs/s "Send throughput, msgs/s"
ratios RoutedSend cpu-ns/msg "Send CPU per delivered frame, ns"
ratios RoutedCall p50-µs "Call round trip p50, µs"
ratios RoutedCall p99-µs "Call round trip p99, µs"

[ "${CONVERGENCE:-1}" = 0 ] && exit 0
echo "== go test ./mesh/route -run '^\$' -bench Convergence -benchtime 1x (deterministic core)"
go test ./mesh/route -run '^$' -bench Convergence -benchtime 1x | grep '^Benchmark'
echo "== go test ./mesh -run '^\$' -bench MeshConvergence -benchtime 1x (real meshes)"
go test ./mesh -run '^$' -bench MeshConvergence -benchtime 1x -timeout 30m | grep '^Benchmark'
echo "== load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
