#!/bin/bash
# ocevent.sh — group events delivered to a C client of liboc_event whose
# callback completes at once (oc_ev_callback_done in the callback), next to
# the Go client in the same run.
#
# BenchmarkOcEventDelivery in cmd/corral starts three agent processes on
# this machine (127.0.0.1-3, default timings), builds and installs c/ into
# a temporary prefix and compiles c/test/bench/ocbench.c against it. On
# node 1: the C receiver and a Go receiver (events.Service callback, the
# same priority: both gated by the node-wide dispatch of client protocol
# v3, in one band), a Go receiver reading Deliveries (ungated), and a
# sender of N messages of 100 B to a group they joined. recv= says which
# gated receivers take part (c+go, c alone, go alone); flood sends as fast
# as the window allows, rate=half at half the gated rate the flood reached.
# ev/s: from a receiver's first callback to its last. p50/p99: from commit
# (the sender got the GROUP_SEND reply) to the callback, same clock.
#
# Env: N (messages per run, default 20000), COUNT (runs, default 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
N=${N:-20000}
COUNT=${COUNT:-1}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cd "$root"
echo "== corral: BenchmarkOcEventDelivery, ${N} messages per run"
go test -run '^$' -bench 'BenchmarkOcEventDelivery' -benchtime "${N}x" -count "$COUNT" -timeout 60m ./cmd/corral | tee "$out"
echo
echo "== events/s and commit-to-callback latency (ms, p50/p99) per receiver"
awk '
function m(u,   i) { for (i = 3; i < NF; i++) if ($(i+1) == u) return $i; return "" }
function lat(w) { return m(w "-p50-ms") == "" ? "-" : m(w "-p50-ms") "/" m(w "-p99-ms") }
function ev(w) { return m(w "-ev/s") == "" ? "-" : sprintf("%.0f", m(w "-ev/s")) }
BEGIN { printf "%-16s %9s %9s %9s %6s %15s %15s %15s\n", "run", "C ev/s", "Go ev/s", "ungated", "C/Go", "C lat", "Go lat", "ungated lat" }
/^BenchmarkOcEventDelivery\// {
	split($1, p, "/"); name = p[2] "/" p[3]; sub(/-[0-9]+$/, "", name)
	printf "%-16s %9s %9s %9s %6s %15s %15s %15s\n", name, ev("c"), ev("go"), ev("go-ungated"),
		m("c/go") == "" ? "-" : sprintf("%.2f", m("c/go")), lat("c"), lat("go"), lat("go-ungated")
}' "$out"
