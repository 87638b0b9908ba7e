#!/bin/bash
# dhcp.sh — corral's DHCPv4 server (corral dhcp serve) under perfdhcp, side
# by side with ISC Kea 2.2 memfile at the same offered rates, in one run.
#
# perfdhcp (Debian kea-admin) acts as a relay over loopback, one fresh
# server per rate and per server kind:
#   kea       the anchor's configuration (../shared/anchors/kea-perfdhcp.sh):
#             memfile, persistent lease file, no fsync; relay 127.0.0.2.
#   binfiles  corral, binfiles module (every lease fsynced before its ACK).
#   files     corral, files module (off by default: a few DORA/s).
#   cluster1  corral, cluster module on a one-node agent (every lease on the
#             log's fsynced disk before its ACK).
#   cluster3  corral, cluster module on three agents on 127.0.1.1-3 (every
#             lease on a majority's disk before its ACK), server on node 1.
# corral's relay is 10.0.0.2 (added to lo as a /32): the server picks a
# relayed packet's network by giaddr, so the relay must be in the network
# (10.0.0.0/13, records owned by 127.0.0.1, fresh for each point, filled by
# bench/dhcpload). perfdhcp uses 1M random clients (-R) as in the anchor.
#
# Prints per rate and server: 4-way exchanges/s, DISCOVER-OFFER and
# REQUEST-ACK drop ratios, the REQUEST-ACK delay min/avg/max; then
# the CPU seconds of perfdhcp and of each server and agent process while
# perfdhcp ran, and the servers' CPU seconds per 1000 DORA; then
# corral/Kea ratios, and the load average (2 shared cores); with BASE or
# AB, each label's mean DORA/s and CPU µs per DORA (server; agents
# together) over its points and their ratios to MODE@base (repeat a rate
# in RATES for several pairs).
#
# Env: RATES (default "5000 7000 10000 15000 20000"), P (perfdhcp -p
# seconds, default 8), MODES (default "kea binfiles cluster1 cluster3"),
# WORKERS (server handler goroutines for cluster, default 256: a commit
# waits for the log, so many must be in flight; corral dhcp serve's own
# default, by module, is the same), WORKERS_LOCKED (for files
# and binfiles, default 2, the server's default too: every store call takes the dsvc lock service's
# file lock, which waiters poll, and a write holds it exclusively through
# its fsync; 256 workers polling it gave ~30 DORA/s, 2 gave ~400), READS (the cluster module's
# reads, default local: the one server writes through node 1 and a write is
# answered once applied there, so node 1's replica already holds every
# lease it was told of, and every commit is checked by signature anyway;
# READS=linearizable asks the leader for a read index per lookup), BASE (a commit: each corral
# point is run first with that commit's corral, labelled MODE@base, for a
# side-by-side comparison in one run), AB (settings separated by "|",
# e.g. AB="WORKERS=256|WORKERS=1024": each corral point is run once per
# setting, labelled MODE@N:setting, instead of once), PROFILE=1 (a CPU profile of each
# corral server and of node 1's agent, kept in the work dir, top items printed), KEEP=1.
# Run as root (port 67, lo addresses).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
RATES=${RATES:-5000 7000 10000 15000 20000}
P=${P:-8}
MODES=${MODES:-kea binfiles cluster1 cluster3}
WORKERS=${WORKERS:-256}
WORKERS_LOCKED=${WORKERS_LOCKED:-2}
READS=${READS:-local}
[ "$(id -u)" = 0 ] || { echo "needs root (port 67, lo addresses)" >&2; exit 2; }
command -v kea-dhcp4 >/dev/null && command -v perfdhcp >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q kea-dhcp4-server kea-admin >/dev/null
mkdir -p /run/kea /var/run/kea
added=()
for a in 127.0.0.2/8 10.0.0.2/32; do
	ip addr show dev lo | grep -q " ${a%/*}/" || { ip addr add "$a" dev lo && added+=("$a"); }
done
w=$(mktemp -d)
pids=()
cleanup() {
	local p a
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for a in "${added[@]}"; do ip addr del "$a" dev lo 2>/dev/null; done
	if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $w"; else rm -rf "$w"; fi
}
trap cleanup EXIT
cd "$root"
go build -o "$w/corral" ./cmd/corral && go build -o "$w/dhcpload" ./bench/dhcpload || exit 1
BIN=$w/corral
if [ -n "${BASE:-}" ]; then
	# The same modes with the corral of commit BASE, each point right
	# before the worktree's, so a change is measured side by side.
	mkdir -p "$w/base-src"
	git archive "$BASE" | tar -x -C "$w/base-src" && (cd "$w/base-src" && go build -o "$w/corral-base" ./cmd/corral) || exit 1
fi
res=$w/results # lines: mode rate dora/s drops-do drops-ra ack-min ack-avg ack-max
lat=$w/latency # lines: mode rate dora/s p50-ms p99-ms exchanges
cpus=$w/cpus   # lines: mode rate dora/s kind=µs-per-DORA…
: >"$res"
: >"$lat"
: >"$cpus"

# cpusnap records the CPU ticks of every process started for the point,
# right before perfdhcp starts; cpu then counts from there.
declare -A ticks0
cpusnap() {
	local p
	ticks0=()
	for p in "${pids[@]}"; do
		[ -r "/proc/$p/stat" ] && ticks0[$p]=$(awk '{sub(/^[^)]*\) /, ""); print $12+$13}' "/proc/$p/stat")
	done
}

# cpu MODE RATE prints the CPU seconds (user+system) of perfdhcp and of
# every process started for the point while perfdhcp ran (which all share
# the 2 cores), and the server's and agents' together per 1000 DORA; then
# each kind's (dhcp, agent: all agents together) CPU µs per DORA, which
# the other engineers' load moves less than the rates.
cpu() {
	local p line=" $1 r=$2 cpu-s:" tck c all=0 dora kind us=""
	local -A bykind=()
	tck=$(getconf CLK_TCK)
	line+=" perfdhcp=$(awk 'NR==2 {gsub(/[ms]/, " "); printf "%.2f", $1*60+$2+$3*60+$4}' "$w/perf-$1-$2.times" 2>/dev/null)"
	for p in "${pids[@]}"; do
		[ -r "/proc/$p/stat" ] || continue
		c=$(awk -v t0="${ticks0[$p]:-0}" '{sub(/^[^)]*\) /, ""); print $12+$13-t0}' "/proc/$p/stat")
		all=$((all + c))
		kind=$(tr '\0' ' ' </proc/"$p"/cmdline | awk '{print ($2 == "agent" || $2 == "dhcp" ? $2 : "kea")}')
		bykind[$kind]=$((${bykind[$kind]:-0} + c))
		line+=" $(tr '\0' ' ' </proc/"$p"/cmdline | awk '{n=$1; sub(/.*\//, "", n); print n ($2 == "agent" || $2 == "dhcp" ? "-" $2 : "")}')=$(awk -v c="$c" -v t="$tck" 'BEGIN {printf "%.2f", c/t}')"
	done
	dora=$(awk -v m="$1" -v r="$2" '$1==m && $2==r {d=$3} END {print d+0}' "$res")
	line+=" servers-per-1k-DORA=$(awk -v c="$all" -v t="$tck" -v d="$dora" -v p="$P" 'BEGIN {printf "%.3f", (d > 0 ? c/t/(d*p/1000) : 0)}')"
	for kind in "${!bykind[@]}"; do
		us+=" $kind=$(awk -v c="${bykind[$kind]}" -v t="$tck" -v d="$dora" -v p="$P" 'BEGIN {printf "%.0f", (d > 0 ? c/t/(d*p)*1e6 : 0)}')"
	done
	line+=" us-per-DORA:$us"
	echo "  $line"
	echo "$1 $2 $dora$us" >>"$cpus"
}

# stopall kills the processes started for one point, by pid, the last
# started first: the server stops before its agents.
stopall() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null
		wait "${pids[i]}" 2>/dev/null
	done
	pids=()
}

# perf MODE RATE LOCAL runs perfdhcp as the relay LOCAL and records its figures.
# With LAT=1 it asks perfdhcp for every exchange's timestamps (-x t) and
# records the REQUEST-ACK delay's p50 and p99 in $lat instead.
perf() {
	local mode=$1 rate=$2 local=$3 out=$w/perf-$1-$2
	if [ "${LAT:-0}" = 1 ]; then
		out=$out-lat
		timeout $((P + 30)) perfdhcp -4 -l "$local" -r "$rate" -R 1000000 -p "$P" -x t 127.0.0.1 >"$out" 2>&1
		# "sent / received: HHMMSS.micro / HHMMSS.micro", relative to the start.
		local got
		got=$(awk '/^Rate:/ {print $2+0}' "$out")
		awk 'function sec(t) { return int(t/10000)*3600 + int(t/100)%100*60 + (t - int(t/100)*100) }
			/Timestamps for packets: REQUEST-ACK/ {ra=1; next} /^\*\*\*/ {ra=0}
			ra && /^sent \/ received:/ {printf "%.3f\n", (sec($6)-sec($4))*1000}' "$out" | sort -g |
			awk -v m="$mode" -v r="$rate" -v got="${got:-0}" '{d[NR]=$1}
				END {if (NR == 0) printf "%s %s %s - - 0\n", m, r, got; else printf "%s %s %s %.3f %.3f %d\n", m, r, got, d[int((NR-1)*0.5)+1], d[int((NR-1)*0.99)+1], NR}' |
			tee -a "$lat"
		return
	fi
	(timeout $((P + 30)) perfdhcp -4 -l "$local" -r "$rate" -R 1000000 -p "$P" 127.0.0.1 >"$out" 2>&1; times >"$out.times")
	awk -v m="$mode" -v r="$rate" '
		/^Rate:/ {rate=$2}
		/Statistics for: DISCOVER-OFFER/ {s=1} /Statistics for: REQUEST-ACK/ {s=2}
		/drops ratio/ {d[s]=$3}
		s==2 && /min delay/ {mn=$3} s==2 && /avg delay/ {av=$3} s==2 && /max delay/ {mx=$3}
		END {printf "%s %s %s %s %s %s %s %s\n", m, r, rate+0, d[1]==""?"-":d[1], d[2]==""?"-":d[2], mn==""?"-":mn, av==""?"-":av, mx==""?"-":mx}' "$out" | tee -a "$res"
}

kea() {
	local rate=$1 d=$w/kea
	mkdir -p "$d" && rm -f "$d"/leases4.csv*
	cat >"$d/kea4.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": ["lo/127.0.0.1"], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$d/leases4.csv", "lfc-interval": 0 },
  "multi-threading": { "enable-multi-threading": false },
  "valid-lifetime": 4000,
  "subnet4": [ { "id": 1, "subnet": "10.0.0.0/8", "relay": { "ip-addresses": ["127.0.0.2"] },
     "pools": [ { "pool": "10.0.0.1 - 10.255.255.254" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "severity": "WARN", "output_options": [ { "output": "$d/kea.log" } ] } ]
} }
JSON
	kea-dhcp4 -c "$d/kea4.json" >"$d/kea.out" 2>&1 &
	pids+=($!)
	sleep 1.5
	cpusnap
	perf kea "$rate" 127.0.0.2
	[ "${LAT:-0}" = 1 ] || cpu kea "$rate"
	stopall
}

# agents N DIR starts N agents on 127.0.1.1..N, node 1 founding the
# cluster, and waits until node 1's view holds all of them.
agents() {
	local n=$1 d=$2 i j peers port=7870 t
	mkdir -p "$d"
	"$BIN" keygen --out "$d/key" >/dev/null
	for i in $(seq 1 "$n"); do
		peers=
		for j in $(seq 1 "$n"); do [ "$j" = "$i" ] || peers+=${peers:+,}127.0.1.$j:$port; done
		"$BIN" agent --id "$i" --name "n$i" --bind "127.0.1.$i:$port" ${peers:+--peers "$peers"} \
			--data-dir "$d/n$i" --cluster-key-file "$d/key" --log-level warn \
			$([ "${PROFILE:-0}" = 1 ] && echo --http-addr "127.0.1.$i:7871") \
			$([ "$i" = 1 ] && echo --bootstrap) >"$d/n$i.log" 2>&1 &
		pids+=($!)
	done
	for t in $(seq 1 300); do
		[ "$(timeout 5 "$BIN" members --data-dir "$d/n1" --json 2>/dev/null | jq '[.[] | select(.member)] | length' 2>/dev/null)" = "$n" ] && return 0
		sleep 0.1
	done
	echo "agents: no view of $n in 30s" >&2
	return 1
}

# corral MODE RATE runs the server with $BIN; the results name it
# MODE@$TAG when TAG is set (BASE's binary).
corral() {
	local mode=$1 rate=$2 d=$w/$1${TAG:+@$TAG}-$2 module loc conf="" n
	local label=$mode${TAG:+@$TAG}
	n=$((rate * P + rate * P / 10 + 1000))
	[ "$mode" = files ] && n=$((n > 50000 ? 50000 : n))
	rm -rf "$d" # a rate given twice in RATES runs afresh
	mkdir -p "$d"
	local workers=$WORKERS
	case $mode in
	binfiles | files) module=$mode loc=$d/dsvc workers=$WORKERS_LOCKED ;;
	cluster1 | cluster3)
		module=cluster loc=/bench
		agents "${mode#cluster}" "$d/agents" || { stopall; return; }
		conf=socket=$d/agents/n1/client.sock,reads=$READS
		;;
	esac
	"$w/dhcpload" -r "$module" -p "$loc" -u "$conf" -net 10.0.0.0/13 -n "$n" -sip 127.0.0.1 -skip 10.0.0.2 >"$d/load.out" 2>&1 ||
		{ cat "$d/load.out" >&2; stopall; return; }
	cat >"$d/srv.toml" <<EOF
listen = "127.0.0.1:67"
owners = ["127.0.0.1"]
workers = $workers
[datastore]
module = "$module"
location = "$loc"
config = "$conf"
[[network]]
prefix = "10.0.0.0/13"
EOF
	local prof=()
	[ "${PROFILE:-0}" = 1 ] && prof=(--cpuprofile "$d/cpu.prof")
	"$BIN" dhcp serve --config "$d/srv.toml" --log-level info "${prof[@]}" >"$d/srv.log" 2>&1 &
	pids+=($!)
	sleep 1.5
	local aprof=
	if [ "${PROFILE:-0}" = 1 ] && [ "$module" = cluster ]; then
		# node 1's agent (the leader, the server's agent) over the run.
		curl -s -o "$d/agent1.prof" "http://127.0.1.1:7871/debug/pprof/profile?seconds=$P" &
		aprof=$!
	fi
	cpusnap
	perf "$label" "$rate" 10.0.0.2
	[ -n "$aprof" ] && wait "$aprof"
	[ "${LAT:-0}" = 1 ] || cpu "$label" "$rate"
	stopall
	# The server's counters at its stop: commits, collisions (reread and
	# retried), lost (given up), no free address, store errors.
	grep -o 'msg=counters.*' "$d/srv.log" | sed "s/^msg=counters/   $label r=$rate counters:/"
	grep -o 'msg=sockets.*' "$d/srv.log" | sed "s/^msg=sockets/   $label r=$rate sockets:/"
	if [ "${PROFILE:-0}" = 1 ]; then
		echo "-- $label r=$rate: CPU profile, top 15"
		go tool pprof -top -nodecount=15 "$BIN" "$d/cpu.prof" 2>/dev/null | sed -n '/flat%/,$p'
		if [ -s "$d/agent1.prof" ]; then
			echo "-- $label r=$rate: node 1's agent CPU profile, top 15"
			go tool pprof -top -nodecount=15 "$BIN" "$d/agent1.prof" 2>/dev/null | sed -n '/flat%/,$p'
		fi
	fi
}

echo "== dhcp.sh: rates $RATES, -p $P, modes $MODES, workers $WORKERS (files, binfiles $WORKERS_LOCKED), cluster reads $READS; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mode rate DORA/s drops(DO) drops(RA) ack-delay-ms(min avg max)"
for r in $RATES; do
	for m in $MODES; do
		case $m in
		kea) kea "$r" ;;
		*)
			[ -n "${BASE:-}" ] && BIN=$w/corral-base TAG=base corral "$m" "$r"
			if [ -n "${AB:-}" ]; then
				IFS='|' read -ra vs <<<"$AB"
				k=0
				for v in "${vs[@]}"; do
					k=$((k + 1))
					(eval "$v" && TAG=$k:${v// /_} corral "$m" "$r")
				done
			else
				corral "$m" "$r"
			fi
			;;
		esac
	done
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== DORA/s: corral / Kea at each rate (the mean of a rate's points when RATES repeats it)"
awk '{t[$1" "$2]+=$3; c[$1" "$2]++; if (!($1 in seen)) {seen[$1]=1; ms[++nm]=$1}; if (!($2 in rs)) {rs[$2]=1; rr[++nr]=$2}}
	END {
		for (k in t) v[k]=t[k]/c[k]
		for (i=1; i<=nr; i++) {
			r=rr[i]; k=v["kea " r]; line=sprintf("r=%-6s kea %8.0f", r, k)
			for (j=1; j<=nm; j++) if (ms[j] != "kea") line=line sprintf("  %s %8.0f (%.2fx)", ms[j], v[ms[j]" "r], k>0 ? v[ms[j]" "r]/k : 0)
			print line
		}
		for (j=1; j<=nm; j++) {m=ms[j]; best=0; for (i=1; i<=nr; i++) if (v[m" "rr[i]]>best) best=v[m" "rr[i]]; mx[m]=best}
		line="max"; for (j=1; j<=nm; j++) line=line sprintf("  %s %.0f", ms[j], mx[ms[j]]); print line
		if (mx["kea"] > 0) {line="max ratio to kea:"; for (j=1; j<=nm; j++) if (ms[j] != "kea") line=line sprintf("  %s %.2fx", ms[j], mx[ms[j]]/mx["kea"]); print line}
	}' "$res"
# With BASE or AB: each label's means over its points (a rate given
# several times in RATES repeats the pair), and their ratio to the
# mode's @base label: the A/B of one run.
if [ -n "${BASE:-}${AB:-}" ]; then
	echo "== A/B: means over each label's points; ratio to MODE@base"
	awk '{l=$1; n[l]++; d[l]+=$3; for (i=4; i<=NF; i++) {split($i, kv, "="); u[l" "kv[1]]+=kv[2]; ks[kv[1]]=1}
			if (!(l in seen)) {seen[l]=1; ls[++nl]=l}}
		END {
			for (j=1; j<=nl; j++) {
				l=ls[j]; b=l; sub(/@.*/, "", b); b=b "@base"; line=sprintf("%-24s n=%d DORA/s %7.0f", l, n[l], d[l]/n[l])
				if (b != l && (b in n)) line=line sprintf(" (%.2fx)", (d[l]/n[l])/(d[b]/n[b]))
				for (k in ks) if ((l" "k) in u) {
					line=line sprintf("  %s µs/DORA %4.0f", k, u[l" "k]/n[l])
					if (b != l && (b in n) && u[b" "k] > 0) line=line sprintf(" (%.2fx)", (u[l" "k]/n[l])/(u[b" "k]/n[b]))
				}
				print line
			}
		}' "$cpus"
fi
# ACK latency at half of each server's best rate in the sweep.
if [ "${LATENCY:-1}" = 1 ]; then
	echo "== REQUEST-ACK delay at half of each server's best DORA/s (perfdhcp -x t, every successful exchange)"
	echo "mode rate DORA/s p50-ms p99-ms exchanges"
	for m in $MODES; do
		half=$(awk -v m="$m" '$1==m && $3>b {b=$3} END {printf "%d", b/2}' "$res")
		[ "${half:-0}" -gt 0 ] || continue
		case $m in
		kea) LAT=1 kea "$half" ;;
		*) LAT=1 PROFILE=0 corral "$m" "$half" ;;
		esac
	done
fi
