#!/bin/bash
# reroute.sh — time from a cut link to the new route, split into
# detection (the cut's end loses its link) and propagation (the rest),
# p50/p99, with a feasible alternate and without one (starvation and a
# seqno request).
#
# 1. In one process (mesh TestRerouteInProcess): a proxy per link resets
#    both ends (detection ≈ 0) and refuses reconnects; a triangle 1–2–3
#    with a tail 3–4 (link 2–3 of cost 50, so node 1's route to 4 has a
#    feasible alternate) and a ring of 5; the clock stops when the
#    forwarding table holds the new next hop.
# 2. Real agents (cmd/corral TestMeshRerouteAgents) on netlab rings of 4
#    and 5, default heartbeats (100 ms, timeout 500 ms): netlab CutEdge
#    (silent: detection = the heartbeat timeout) and CutEdge + ResetEdge
#    (resets at both ends), the clock stops when the agent's ROUTES (what
#    corral routes --json shows) names the new next hop; goal ≤ heartbeat
#    timeout + 50 ms. Root (network namespaces).
#
# Env: CUTS (default 100, per graph and mode), REROUTE_MODES (reset,silent),
# AGENTS=0 skips part 2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
CUTS=${CUTS:-100}
cd "$root"
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "== CORRAL_BENCH_REROUTE=$CUTS go test ./mesh -run TestRerouteInProcess -v"
CORRAL_BENCH_REROUTE=$CUTS go test ./mesh -run TestRerouteInProcess -v -count 1 | grep -v '^=== RUN'
[ "${AGENTS:-1}" = 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "the agents' part needs root (network namespaces)" >&2; exit 2; }
echo "== CORRAL_BENCH_REROUTE=$CUTS go test ./cmd/corral -run TestMeshRerouteAgents -v"
CORRAL_BENCH_REROUTE=$CUTS go test ./cmd/corral -run TestMeshRerouteAgents -v -count 1 -timeout 60m | grep -v '^=== RUN'
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
