#!/bin/bash
# falsesuspect.sh — do healthy agents on a starved machine suspect each other?
#
# Three agents (default timings) run for MINUTES minutes (default 10) in
# network namespaces built by lib.sh, with every core kept busy by one
# `yes > /dev/null` per core. Every event the agents deliver is recorded by a
# `corral events --json` stream per agent. At the end it reports, per agent
# and in total, the SUSPECT events, the view changes (NEWVIEW events, and the
# view instance before and after), the connectivity events and the
# "link down" / "lost contact" lines in the agent logs. The goal is zero of
# each; the script exits 1 otherwise.
#
# BUSY_LOOPS sets the number of busy loops (default: one per core); with
# BUSY_LOOPS=10 on 2 cores the load average passes 10.
#
# Env: MINUTES, BUSY_LOOPS, KEEP=1 keeps the work dir (kept anyway when the script fails). Run as root: MINUTES=1 bench/falsesuspect.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
MINUTES=${MINUTES:-10}

W=$(mktemp -d /tmp/corral-falsesuspect.XXXXXX)
BIN=$W/corral
declare -A PID EVPID
BUSY=()

stop_all() {
	local p
	for p in "${BUSY[@]}" "${PID[@]}" "${EVPID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${BUSY[@]}" "${PID[@]}" "${EVPID[@]}"; do wait "$p" 2>/dev/null || true; done
	BUSY=() PID=() EVPID=()
}
cleanup() {
	local rc=$?
	stop_all
	lab_down
	if [ "${KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then echo "work dir kept: $W (logs n*.log, events ev*.log)"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building corral"
(cd "$root" && go build -o "$BIN" ./cmd/corral)
have_events || { echo "this corral has no 'events' command: SUSPECT events cannot be recorded" >&2; exit 2; }
"$BIN" keygen --out "$W/key" >/dev/null
lab_up 3
echo "lab $LAB: hosts $(lab_addr 1) $(lab_addr 2) $(lab_addr 3), agents on port 7946"
for i in 1 2 3; do
	mkdir -p "$W/d$i"
	boot=
	[ "$i" = 1 ] && boot=--bootstrap
	ip netns exec "$LAB-h$i" "$BIN" agent --id "$i" --name "n$i" --bind "$(lab_addr "$i"):7946" \
		--peers "$(lab_peers "$i" 3 7946)" --data-dir "$W/d$i" --cluster-key-file "$W/key" $boot >"$W/n$i.log" 2>&1 &
	PID[$i]=$!
done

deadline=$((SECONDS + 60))
while :; do
	a=$(view_of "$W/d1") b=$(view_of "$W/d2") c=$(view_of "$W/d3")
	[ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ] && [ "$(echo "$a" | cut -d' ' -f2)" = 3 ] && break
	[ $SECONDS -lt $deadline ] || { echo "no 3-member view within 60 s: [$a] [$b] [$c]" >&2; exit 1; }
	sleep 0.1
done
sleep 2 # let the links settle before counting anything
for i in 1 2 3; do
	"$BIN" events --data-dir "$W/d$i" --json > >(stamp >>"$W/ev$i.log") 2>>"$W/ev$i.err" &
	EVPID[$i]=$!
done
sleep 1
view0=$a
for i in 1 2 3; do logs0[$i]=$(wc -l <"$W/n$i.log"); done

cores=${BUSY_LOOPS:-$(nproc)}
for _ in $(seq 1 "$cores"); do yes >/dev/null & BUSY+=($!); done
t0=$(now)
echo "view $view0 formed; $cores busy loops started; running $MINUTES min"
for m in $(seq 1 "$MINUTES"); do
	sleep 60
	echo "  minute $m: load $(cut -d' ' -f1-3 /proc/loadavg), view $(view_of "$W/d1")"
done
t1=$(now)
for p in "${BUSY[@]}"; do kill -9 "$p"; wait "$p" 2>/dev/null || true; done
BUSY=()
sleep 1 # the last events reach the streams
view1=$(view_of "$W/d1")
for i in 1 2 3; do
	kill -0 "${EVPID[$i]}" 2>/dev/null || echo "WARNING: the events stream of n$i ended early: $(tail -3 "$W/ev$i.err")"
done

# count S EVENT-REGEX: events of agent S, after t0, whose name matches.
count() {
	jq -rR --argjson t0 "$t0" --arg re "$2" '
		(index(" ")) as $sp | (.[:$sp] | tonumber) as $ts | select($ts >= $t0)
		| (.[$sp+1:] | fromjson?) // empty | select(.event // "" | tostring | test("^(" + $re + ")$")) | 1' \
		"$W/ev$1.log" 2>/dev/null | grep -c . || true
}
ncount() { jq -rR --argjson t0 "$t0" '(index(" ")) as $sp | (.[:$sp] | tonumber) as $ts | select($ts >= $t0) | (.[$sp+1:] | fromjson?) // empty | select(.class == "connectivity") | .event' "$W/ev$1.log" 2>/dev/null | grep -c . || true; }
logcount() { tail -n +"$((${logs0[$1]} + 1))" "$W/n$1.log" | grep -c "$2" || true; }

tot_s=0 tot_v=0 tot_c=0 tot_l=0 tot_q=0 tot_w=0
echo
printf '%-4s %8s %8s %13s %10s %13s %7s %11s\n' node SUSPECT NEWVIEW connectivity "link down" "lost contact" events "warn+error"
for i in 1 2 3; do
	s=$(count "$i" SUSPECT) v=$(count "$i" NEWVIEW) c=$(ncount "$i")
	l=$(logcount "$i" 'link down') q=$(logcount "$i" 'lost contact') w=$(logcount "$i" 'level=\(WARN\|ERROR\)')
	all=$(awk -v t0="$t0" '$1 >= t0' "$W/ev$i.log" 2>/dev/null | grep -c . || true)
	printf 'n%-3s %8s %8s %13s %10s %13s %7s %11s\n' "$i" "$s" "$v" "$c" "$l" "$q" "$all" "$w"
	tot_s=$((tot_s + s)) tot_v=$((tot_v + v)) tot_c=$((tot_c + c)) tot_l=$((tot_l + l)) tot_q=$((tot_q + q)) tot_w=$((tot_w + w))
done
dur=$(awk -v a="$t1" -v b="$t0" 'BEGIN{printf "%.1f", (a-b)/60}')
echo "view before: $view0; after: $view1 (instance, members, ids)"
if [ "$tot_s$tot_v$tot_c$tot_l$tot_q" = 00000 ] && [ "${view0%% *}" = "${view1%% *}" ]; then verdict=OK; else verdict=FAIL; fi

# Agents that died during the run (they should not).
dead=
for i in 1 2 3; do
	if ! kill -0 "${PID[$i]}" 2>/dev/null; then
		wait "${PID[$i]}" 2>/dev/null && st=0 || st=$?
		[ "$st" = 137 ] && how="killed by SIGKILL from outside (no panic in its log)" || how="exited with status $st"
		grep -q '^panic' "$W/n$i.log" && how="$how; $(grep -m1 '^panic' "$W/n$i.log" | cut -c1-200)"
		echo "agent n$i DIED during the run: $how; last log line at $(tail -1 "$W/n$i.log" | cut -c6-29)"
		dead+=" n$i"
		verdict=FAIL
	fi
done

# Control: the recording must see a real failure, or zeros above mean nothing.
if [ -z "$dead" ]; then
	tk=$(now)
	{ kill -9 "${PID[3]}"; wait "${PID[3]}"; } 2>/dev/null || true
	ok=
	for _ in $(seq 1 200); do
		a=$(jq -rR --argjson t0 "$tk" '(index(" ")) as $sp | select((.[:$sp] | tonumber) >= $t0) | (.[$sp+1:] | fromjson?) // empty | select(.event == "NEWVIEW" and any((.data.left // [])[]; .id == 3)) | 1' "$W/ev1.log" 2>/dev/null | head -1)
		b=$(jq -rR --argjson t0 "$tk" '(index(" ")) as $sp | select((.[:$sp] | tonumber) >= $t0) | (.[$sp+1:] | fromjson?) // empty | select(.event == "NEWVIEW" and any((.data.left // [])[]; .id == 3)) | 1' "$W/ev2.log" 2>/dev/null | head -1)
		[ "$a$b" = 11 ] && { ok=1; break; }
		sleep 0.05
	done
	if [ -n "$ok" ]; then echo "control: after the run, kill -9 n3 -> NEWVIEW without n3 recorded on n1 and n2 (the recording works)"
	else echo "control FAILED: kill -9 n3 after the run left no NEWVIEW in the n1/n2 recordings"; verdict=FAIL; fi
else
	echo "control skipped: an agent died during the run"
fi
echo "SUMMARY: $dur min, 3 agents, $cores cores busy: $tot_s SUSPECT events, $tot_v view changes, $tot_c connectivity events, $tot_l 'link down' + $tot_q 'lost contact' log lines ($tot_w warn/error lines): $verdict"
if [ "$verdict" != OK ]; then
	echo "--- first incidents (seconds after the start; membership events and link timeouts):"
	{
		for i in 1 2 3; do
			jq -rR --argjson t0 "$t0" --arg n "n$i" '(index(" ")) as $sp | (.[:$sp] | tonumber) as $ts | select($ts >= $t0)
				| (.[$sp+1:] | fromjson?) // empty | select(.class == "membership")
				| "\($ts - $t0 | . * 10 | floor / 10) \($n) \(.event)\(if .event == "NEWVIEW" then " instance \(.data.instance) left \([(.data.left // [])[].id]) joined \([(.data.joined // [])[].id])" else "" end)"' "$W/ev$i.log" 2>/dev/null
			tail -n +"$((${logs0[$i]} + 1))" "$W/n$i.log" | grep 'link down' | grep -v 'duplicate link' |
				sed -n 's/^time=\([^ ]*\) .*peer=\([^ ]*\) .*err="\(.*\)"$/\1 \2 \3/p' |
				while read -r ts peer err; do
					printf '%s n%s link down to %s: %s\n' "$(awk -v a="$(date -d "$ts" +%s.%N)" -v b="$t0" 'BEGIN{printf "%.1f", a-b}')" "$i" "$peer" "$err"
				done
		done
	} | sort -g | head -30
	echo "(work dir with the full logs and recordings is kept)"
	exit 1
fi
