#!/bin/bash
# Throughput of the shared address (issue 13, Measure; research notes §5.9 test 20): in one netlab
# lab, nginx on h1–h3 serving a 1 KiB file and wrk from h4 (-t1 -cCONNS -dSECS), ROUNDS times round:
#   direct h4→h2; h4→VIP through the kernel path (owner h1, table over h1–h3), without slices (no
#   conntrack) and with a TCP and a UDP slice leased to every node (snat rules on, conntrack on: the
#   agent's case; conntrack entries made and packets found invalid per node); h4→VIP through the
#   user-space fallback (sharedaddr/userspace on h1, nginx "listen … proxy_protocol" behind it);
#   h4→HAProxy 2.6 tcp mode on h1 in front of h2, and balancing h1–h3 round robin.
# Prints req/s per path and the ratios to direct and to HAProxy, and snat/kernel.
# Usage (root): bench/sharedaddr.sh        Env: SECS (8), CONNS (64), ROUNDS (2),
#   PATHS (comma-separated of direct,kernel,snat,tracked,userspace,haproxy,haproxyrr; all by default;
#   tracked: the snat plan with its notrack rules flushed). Also CPU µs per request (nginx h1–h3 + wrk;
#   HAProxy's own time is not in it) and medians over the rounds; even rounds run the paths in reverse.
# The lab is TestBenchSharedAddr in sharedaddr/userspace, gated by CORRAL_BENCH_SHAREDADDR=1.
set -eu -o pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "sharedaddr.sh: needs root (network namespaces, nftables)" >&2; exit 1; }
command -v haproxy >/dev/null && command -v wrk >/dev/null && command -v nginx >/dev/null || \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy wrk nginx-light >/dev/null
echo "# $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1); load $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
CORRAL_BENCH_SHAREDADDR=1 SECS=${SECS:-8} CONNS=${CONNS:-64} ROUNDS=${ROUNDS:-2} PATHS=${PATHS:-} \
  go test -count=1 -timeout 15m -run '^TestBenchSharedAddr$' -v ./sharedaddr/userspace/ 2>&1 |
  sed -n 's/^ *bench_linux_test.go:[0-9]*: //p; /^--- \|^FAIL\|^ok\|panic/p'
