#!/bin/bash
# dsvc.sh — the data-service modules side by side, in one run, through the
# framework (dsvc.Registry and dsvc.Handle; the lock service over a
# temporary lock directory for files and binfiles, as the tools use it).
#
# BenchmarkModules in dsvc/bench: a network container of 4096 records of
# the conformance suite's shapes, one handle per client; lookup by client
# IP (the DHCP server's hot path), lookup-cid by client id, modify (read,
# then Modify with the signature, again on a collision; each client on
# its own records), add (a new address each time), with 1 and 16
# concurrent clients. postgres runs against the server CORRAL_TEST_POSTGRES
# names, or a throwaway one started from the PostgreSQL binaries
# (internal/pgtest; skipped without them), one pool connection per client.
# The throwaway server is durable (fsync, synchronous_commit and
# full_page_writes on, CORRAL_TEST_POSTGRES_DURABLE=1) unless
# CORRAL_TEST_POSTGRES_DURABLE=0, so its commits wait for the disk as the
# files and binfiles writes (fsync) do.
# ops/s: all clients together; lat: the mean time one operation took its
# client (µs).
#
# Env: BENCHTIME (go test -benchtime, default 2s), COUNT (runs, default 1;
# the table shows the median), MODULES (a -bench pattern for the module,
# anchored to the whole name, default every module).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BENCHTIME=${BENCHTIME:-2s}
COUNT=${COUNT:-1}
MODULES=${MODULES:-.*}
export CORRAL_TEST_POSTGRES_DURABLE=${CORRAL_TEST_POSTGRES_DURABLE:-1}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cd "$root"
if [ -n "${CORRAL_TEST_POSTGRES:-}" ]; then
	pg="the server CORRAL_TEST_POSTGRES names (durability its own)"
elif [ "$CORRAL_TEST_POSTGRES_DURABLE" = 1 ]; then
	pg="a throwaway server, durable (fsync=on synchronous_commit=on full_page_writes=on)"
else
	pg="a throwaway server, not durable (fsync=off synchronous_commit=off full_page_writes=off)"
fi
echo "== corral: BenchmarkModules, -benchtime $BENCHTIME; postgres: $pg"
go test -run '^$' -bench "BenchmarkModules/^($MODULES)$/" -benchtime "$BENCHTIME" -count "$COUNT" -timeout 60m ./dsvc/bench | tee "$out"
echo
echo "== ops/s per module (lat µs), and each module's rate over the first's"
awk '
function m(u,   i) { for (i = 3; i < NF; i++) if ($(i+1) == u) return $i; return "" }
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
/^BenchmarkModules\// {
	split($1, p, "/"); sub(/-[0-9]+$/, "", p[4])
	mod = p[2]; row = p[3] "/" p[4]
	if (!(mod in seenm)) { seenm[mod] = 1; mods[++nm] = mod }
	if (!(row in seenr)) { seenr[row] = 1; rows[++nr] = row }
	ops[mod, row] = ops[mod, row] " " m("ops/s"); lat[mod, row] = lat[mod, row] " " m("lat-us")
}
END {
	printf "%-22s", "op/clients"
	for (j = 1; j <= nm; j++) printf " %22s", mods[j]
	for (j = 2; j <= nm; j++) printf " %12s", mods[j] "/" mods[1]
	printf "\n"
	for (i = 1; i <= nr; i++) {
		r = rows[i]; printf "%-22s", r
		for (j = 1; j <= nm; j++) {
			k = mods[j] SUBSEP r
			if (k in ops) printf " %22s", sprintf("%.0f (%.0f)", median(ops[k]), median(lat[k])); else printf " %22s", "-"
		}
		b = mods[1] SUBSEP r
		for (j = 2; j <= nm; j++) {
			k = mods[j] SUBSEP r
			if ((k in ops) && (b in ops) && median(ops[b]) > 0) printf " %12s", sprintf("%.2f", median(ops[k]) / median(ops[b])); else printf " %12s", "-"
		}
		printf "\n"
	}
}' "$out"
