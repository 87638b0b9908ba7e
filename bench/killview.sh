#!/bin/bash
# killview.sh — how long corral takes, after kill -9 of an agent, until every
# survivor has delivered the NEWVIEW that names the dead node in "left";
# then the same figure for Corosync from the anchor script, side by side.
#
# Three agents (default timings) run in network namespaces built by lib.sh
# (hosts 10.251.0.1-3, nothing in the root namespace). Each of RUNS runs
# (default 20) kills one agent with SIGKILL — runs 1, 4, 7, ... the leader
# (a third of the runs, as a random crash of one of three nodes would), the
# others a follower, alternating between the two — measures, restarts it on a
# fresh data dir (a new life of the same node id, which joins again) and
# waits for the 3-member view. Delivery is timed from `corral events --json`
# streams opened before the kill, each line stamped on arrival; without
# `corral events` it falls back to polling `corral members --json` and says
# so. Then ../shared/anchors/corosync-3node.sh runs ANCHOR_RUNS times
# (default 3; 0 skips it), after our agents are stopped.
#
# Env: RUNS, ANCHOR_RUNS, ANCHORS (anchor dir), RESTART=fresh|same (data dir of
# a restarted agent; default fresh), KEEP=1 keeps the work dir (kept anyway
# when the script fails).
# Run as root: bench/killview.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
RUNS=${RUNS:-20}
ANCHOR_RUNS=${ANCHOR_RUNS:-3}
ANCHORS=${ANCHORS:-$root/../shared/anchors}
RESTART=${RESTART:-fresh}
rejoin_fail=0

W=$(mktemp -d /tmp/corral-killview.XXXXXX)
BIN=$W/corral
declare -A PID EVPID
anchor_lab=

stop_all() {
	local p
	for p in "${PID[@]}" "${EVPID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${PID[@]}" "${EVPID[@]}"; do wait "$p" 2>/dev/null || true; done
	PID=() EVPID=()
}
cleanup() {
	local rc=$?
	stop_all
	lab_down
	if [ -n "$anchor_lab" ]; then "$ANCHORS/netns-lab.sh" down 3 || true; fi
	if [ "${KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then echo "work dir kept: $W (logs n*.log, events ev*.log)"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building corral"
(cd "$root" && go build -o "$BIN" ./cmd/corral)
"$BIN" keygen --out "$W/key" >/dev/null
lab_up 3
echo "lab $LAB: hosts $(lab_addr 1) $(lab_addr 2) $(lab_addr 3), agents on port 7946"

if have_events; then MODE=events; else MODE=polling; fi

# start_agent I [FLAGS]: the agent is the background job itself (ip netns
# exec execs it), so PID[I] is the agent's own pid.
start_agent() {
	local i=$1; shift
	mkdir -p "$W/d$i"
	echo "=== start $(date -u +%T.%N)" >>"$W/n$i.log"
	ip netns exec "$LAB-h$i" "$BIN" agent --id "$i" --name "n$i" --bind "$(lab_addr "$i"):7946" \
		--peers "$(lab_peers "$i" 3 7946)" --data-dir "$W/d$i" --cluster-key-file "$W/key" "$@" >>"$W/n$i.log" 2>&1 &
	PID[$i]=$!
}

# start_stream I: a `corral events --json` stream of agent I, each line stamped.
start_stream() {
	local i=$1
	[ "$MODE" = events ] || return 0
	"$BIN" events --data-dir "$W/d$i" --json > >(stamp >>"$W/ev$i.log") 2>>"$W/ev$i.err" &
	EVPID[$i]=$!
}

# wait_view3 SECONDS [I]: until all three agents hold the same view of three
# members; fails early if agent I exits. Prints the view instance, or on
# failure the reason and the agents' last log lines on stderr.
wait_view3() {
	local deadline=$((SECONDS + $1)) i a= b= c= why
	while :; do
		a=$(view_of "$W/d1") b=$(view_of "$W/d2") c=$(view_of "$W/d3")
		if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ] && [ "$(echo "$a" | cut -d' ' -f2)" = 3 ]; then
			echo "${a%% *}"
			return 0
		fi
		if [ -n "${2:-}" ] && ! kill -0 "${PID[$2]}" 2>/dev/null; then why="agent n$2 exited"; break; fi
		if [ $SECONDS -ge $deadline ]; then why="no 3-member view within $1 s"; break; fi
		sleep 0.05
	done
	{
		echo "$why: views n1 [$a] n2 [$b] n3 [$c]"
		for i in 1 2 3; do
			grep -v 'said goodbye' "$W/n$i.log" | grep -E 'panic|WARN|ERROR|joined|evicted' | tail -4 | cut -c1-240 | sed "s/^/  n$i: /"
		done
	} >&2
	return 1
}

# delivered_at S T0 V: the time survivor S delivered a NEWVIEW with V in
# "left" after T0 (events mode); empty if not yet. The streams were opened
# before T0, so whatever they replay on opening is older than T0.
delivered_at() {
	jq -rR --argjson t0 "$2" --argjson v "$3" '
		(index(" ")) as $sp | (.[:$sp] | tonumber) as $ts | select($ts >= $t0)
		| (.[$sp+1:] | fromjson?) // empty
		| select((.event // "" | tostring | test("NEWVIEW")) and any((.data.left // [])[]; .id == $v))
		| $ts' "$W/ev$1.log" 2>/dev/null | head -1
}

# poll_gone S V INST OUT: poll survivor S until its view is newer than INST
# and excludes V; write the time the answer came back to OUT (polling mode).
poll_gone() {
	local s=$1 v=$2 inst=$3 out=$4 vo t
	while :; do
		vo=$(view_of "$W/d$s"); t=$(now)
		if [ -n "$vo" ] && [ "${vo%% *}" -gt "$inst" ] && ! [[ ",${vo##* }," == *",$v,"* ]]; then
			echo "$t" >"$out"; return
		fi
	done
}

start_agent 1 --bootstrap
start_agent 2
start_agent 3
inst=$(wait_view3 60)
for i in 1 2 3; do start_stream "$i"; done
echo "3-member view $inst formed; timing by $MODE"
if [ "$MODE" = polling ]; then
	echo "NOTE: corral has no 'events' command yet: timing by polling 'corral members --json' on each"
	echo "      survivor until its view excludes the killed node (each poll ~20-40 ms: an upper bound)"
fi

results=$W/results
: >"$results"
for r in $(seq 1 "$RUNS"); do
	sleep 1 # let the view settle (and the streams attach) before the next kill
	inst=$(view_of "$W/d1"); inst=${inst%% *}
	leader=$(leader_of "$W/d1"); leader=${leader:-0}
	if [ $((r % 3)) = 1 ] && [ "$leader" -ge 1 ]; then
		v=$leader role=leader
	else
		fol=()
		for i in 1 2 3; do [ "$i" = "$leader" ] || fol+=("$i"); done
		v=${fol[$((r % ${#fol[@]}))]} role=follower
	fi
	surv=()
	for i in 1 2 3; do [ "$i" = "$v" ] || surv+=("$i"); done
	if [ "$MODE" = events ]; then
		for s in "${surv[@]}"; do
			kill -0 "${EVPID[$s]}" 2>/dev/null || { echo "events stream of n$s is gone: $(tail -3 "$W/ev$s.err")" >&2; exit 1; }
		done
		t0=$(now)
		kill -9 "${PID[$v]}"
	else
		t0=$(now)
		kill -9 "${PID[$v]}"
		pollers=()
		for s in "${surv[@]}"; do rm -f "$W/gone$s"; poll_gone "$s" "$v" "$inst" "$W/gone$s" & pollers+=($!); done
	fi
	wait "${PID[$v]}" 2>/dev/null || true
	declare -A at=()
	deadline=$((SECONDS + 60))
	for s in "${surv[@]}"; do
		while :; do
			if [ "$MODE" = events ]; then t=$(delivered_at "$s" "$t0" "$v"); else t=$(cat "$W/gone$s" 2>/dev/null || true); fi
			[ -n "$t" ] && break
			[ $SECONDS -lt $deadline ] || { echo "run $r: n$s saw no new view without n$v within 60 s" >&2; exit 1; }
			sleep 0.02
		done
		at[$s]=$t
	done
	[ "$MODE" = events ] || wait "${pollers[@]}"
	line=$(printf 'run %2d: kill -9 n%s (%-8s) view %s ->' "$r" "$v" "$role" "$inst")
	worst=0
	for s in "${surv[@]}"; do
		d=$(awk -v a="${at[$s]}" -v b="$t0" 'BEGIN{printf "%.3f", a-b}')
		line+=" n$s $d s"
		worst=$(awk -v a="$d" -v b="$worst" 'BEGIN{print (a>b)?a:b}')
	done
	echo "$worst $role" >>"$results"
	# Restart the killed node: with RESTART=fresh a new life on an empty
	# data dir, with RESTART=same on its old one (it was evicted and joins
	# again). A rejoin that fails is counted and tried again, up to 3 times.
	[ -z "${EVPID[$v]:-}" ] || { kill -9 "${EVPID[$v]}" 2>/dev/null || true; wait "${EVPID[$v]}" 2>/dev/null || true; }
	tr=$(now)
	for attempt in 1 2 3 4; do
		[ "$attempt" -le 3 ] || { echo "run $r: n$v could not rejoin in 3 attempts; giving up" >&2; exit 1; }
		[ "$RESTART" = same ] || rm -rf "$W/d$v"
		start_agent "$v"
		if inst=$(wait_view3 60 "$v" 2>"$W/rejoin.err"); then break; fi
		rejoin_fail=$((rejoin_fail + 1))
		echo "run $r: REJOIN FAILURE (attempt $attempt) of n$v: $(cat "$W/rejoin.err")"
		kill -9 "${PID[$v]}" 2>/dev/null || true
		wait "${PID[$v]}" 2>/dev/null || true
	done
	start_stream "$v"
	printf '%s  => all survivors %s s; n%s rejoined (view %s) in %s s\n' "$line" "$worst" "$v" "$inst" \
		"$(awk -v a="$(now)" -v b="$tr" 'BEGIN{printf "%.2f", a-b}')"
done

read -r med wst < <(awk '{print $1}' "$results" | stats)
read -r lmed lwst < <(awk '$2=="leader"{print $1}' "$results" | stats)
read -r fmed fwst < <(awk '$2=="follower"{print $1}' "$results" | stats)
echo "corral kill -9 -> NEWVIEW on every survivor ($MODE, $RUNS runs): median $med s, worst $wst s"
echo "  leader killed:   median $lmed s, worst $lwst s"
echo "  follower killed: median $fmed s, worst $fwst s"
links=$(cat "$W"/n?.log | grep -c 'link down' || true)
echo "  ($links 'link down' lines in the agent logs, the expected ones after each kill)"
echo "  rejoin failures (restart on a $RESTART data dir did not give a 3-member view): $rejoin_fail"
stop_all
lab_down

amed=-
if [ "$ANCHOR_RUNS" -gt 0 ]; then
	if ! command -v corosync >/dev/null; then
		echo "installing corosync for the anchor"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -q corosync libcpg-dev >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null && apt-get install -y -q corosync libcpg-dev >/dev/null; }
	fi
	# The anchor builds hosts sw, h1..h3 and leaves them up: remove them
	# afterwards unless they were there before.
	ip netns list | grep -qE '^(sw|h[123])( |$)' || anchor_lab=1
	: >"$W/anchor"
	for k in $(seq 1 "$ANCHOR_RUNS"); do
		out=$("$ANCHORS/corosync-3node.sh" 2>&1 || true)
		echo "$out" | sed "s/^/anchor run $k: /"
		echo "$out" | sed -n 's/.*kill -9 -> new view on node 1: \([0-9.]*\) s.*/\1/p' >>"$W/anchor"
	done
	read -r amed awst < <(stats <"$W/anchor")
	echo "corosync (anchor) kill -9 -> new view on node 1 ($(wc -l <"$W/anchor") runs): median $amed s, worst $awst s"
fi
echo
echo "corral   kill -9 -> NEWVIEW: median $med s, worst $wst s ($RUNS runs, $MODE; leader killed: median $lmed s, follower killed: median $fmed s; $rejoin_fail rejoin failures)"
echo "corosync kill -9 -> new view: median $amed s, worst ${awst:--} s (anchor, $ANCHOR_RUNS runs)"
ratio=$(awk -v a="$amed" -v b="$med" 'BEGIN{if (a+0>0 && b+0>0) printf "%.1f", a/b; else print "-"}')
echo "SUMMARY: kill->new view median corral $med s vs corosync $amed s: corosync/corral = ${ratio}x"
