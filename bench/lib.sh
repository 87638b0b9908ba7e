# Shared by the bench scripts (source it; it is not run on its own).
#
# lab_up N builds N test hosts the way internal/netlab does: namespaces
# $LAB-h1..$LAB-hN, each with eth0 = 10.251.0.i/24, linked by veths to a
# bridge in the namespace $LAB-sw. LAB is "crl" and a random id, so
# concurrent runs never collide; nothing is added to the root namespace.
# lab_down kills (by pid) what still runs in those namespaces and deletes
# them. The agents' admin and client sockets are unix sockets in their data
# directories, so the corral tools reach them from the root namespace.

lab_addr() { echo "10.251.0.$1"; }

lab_up() {
	local n=$1 i
	[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
	command -v ip >/dev/null || { echo "needs ip (iproute2)" >&2; exit 2; }
	LAB=crl$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	LAB_N=$n
	ip netns add "$LAB-sw"
	ip -n "$LAB-sw" link add br0 type bridge
	ip -n "$LAB-sw" link set br0 up
	for i in $(seq 1 "$n"); do
		ip netns add "$LAB-h$i"
		ip -n "$LAB-sw" link add "v$i" type veth peer name eth0 netns "$LAB-h$i"
		ip -n "$LAB-sw" link set "v$i" master br0 up
		ip -n "$LAB-h$i" addr add "$(lab_addr "$i")/24" dev eth0
		ip -n "$LAB-h$i" link set eth0 up
		ip -n "$LAB-h$i" link set lo up
	done
}

lab_down() {
	[ -n "${LAB:-}" ] || return 0
	local ns pid
	for ns in $(seq -f "$LAB-h%g" 1 "$LAB_N") "$LAB-sw"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	LAB=
}

# lab_peers I N PORT: the peer list of host I: every other host of N, at PORT.
lab_peers() {
	local i=$1 n=$2 port=$3 j out=
	for j in $(seq 1 "$n"); do [ "$j" = "$i" ] || out+=${out:+,}$(lab_addr "$j"):$port; done
	echo "$out"
}

# lab_exec I CMD... runs CMD inside host I.
lab_exec() { local i=$1; shift; ip netns exec "$LAB-h$i" "$@"; }

# now prints the time in seconds with microseconds, without forking.
now() { echo "$EPOCHREALTIME"; }

# stamp prefixes each line read with the time it arrived.
stamp() { local line; while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done; }

# members_json DIR prints `corral members --json` of the agent at DIR as one line ("" on error).
members_json() { timeout 5 "$BIN" members --data-dir "$1" --json 2>/dev/null | jq -c . 2>/dev/null || true; }

# view_of DIR prints "INSTANCE COUNT IDS" of the view the agent at DIR holds, e.g. "12 3 1,2,3".
view_of() {
	members_json "$1" | jq -r 'if length > 0 then "\(.[0].view) \([.[] | select(.member)] | length) \([.[] | select(.member) | .id] | sort | map(tostring) | join(","))" else empty end' 2>/dev/null || true
}

# leader_of DIR prints the id of the leader the agent at DIR knows (0: none).
leader_of() { members_json "$1" | jq -r '[.[] | select(.leader) | .id][0] // 0' 2>/dev/null || echo 0; }

# have_events tells whether this corral has `corral events`.
have_events() { "$BIN" events --help >/dev/null 2>&1; }

# stats prints "median worst" of the numbers on stdin.
stats() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "- -"; exit} m = NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.3f %.3f\n", m, v[NR]}'; }
