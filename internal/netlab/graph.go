package netlab

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Graph labs put each edge on a /30 of its own inside EdgeSubnet; the
// hosts still share one bridge, so routing alone decides who reaches whom.
const (
	EdgeSubnet = "10.252.0.0/16"
	MaxEdges   = 1 << 14 // /30s in EdgeSubnet
)

// deadGateway is an on-link next hop that no host has: CutEdge routes a
// neighbour's node address through it. Its static neighbour entry names a
// MAC no interface carries, so the frames leave the host and the bridge
// floods them to ports that all drop them. Nothing answers and nothing is
// reported: the sender's TCP simply retransmits, as over a cut cable.
const (
	deadGateway = "10.253.0.1"
	deadMAC     = "02:6e:6c:00:00:01"
)

// NewGraph builds n hosts, as New does, where host i reaches only the hosts
// it shares an edge with. Addr(i) sits on host i's lo as a /32, its node
// address; edge k (0-based, in the order given) has a /30 of EdgeSubnet on
// the two hosts' eth0 and, in each, a host route to the other's node
// address through it. A host has no default route and does not forward,
// so a connection to any other host fails at once with "network is
// unreachable". Edges are undirected; a repeated edge or a loop is an
// error.
func NewGraph(t testing.TB, n int, edges [][2]int) *Lab {
	t.Helper()
	norm, err := normEdges(n, edges)
	if err != nil {
		t.Fatalf("netlab: NewGraph: %v", err)
	}
	l := build(t, n)
	l.edges = norm
	for i := 1; i <= n; i++ {
		h := l.Namespace(i)
		l.must("ip", "-n", h, "addr", "add", l.Addr(i)+"/32", "dev", "lo")
		// arp_ignore=1: answer ARP only for addresses of the interface
		// asked on, so a node address on lo is never resolved over eth0;
		// arp_announce=2: ask with the edge address, so hosts do not
		// learn neighbour entries for node addresses.
		if err := l.inHost(i, func() error {
			return sysctl(map[string]string{
				"net/ipv4/ip_forward":            "0",
				"net/ipv4/conf/all/arp_ignore":   "1",
				"net/ipv4/conf/all/arp_announce": "2",
			})
		}); err != nil {
			l.t.Fatalf("netlab %s: host %d: %v", l.name, i, err)
		}
		l.must("ip", "-n", h, "neigh", "replace", deadGateway, "lladdr", deadMAC, "nud", "permanent", "dev", "eth0")
	}
	for k, e := range norm {
		for end := range 2 {
			l.must("ip", "-n", l.Namespace(e[end]), "addr", "add", edgeAddr(k, end)+"/30", "dev", "eth0")
		}
	}
	for k := range norm {
		l.routeEdge(k, false)
	}
	return l
}

// Line builds n hosts on a line: 1-2-...-n.
func Line(t testing.TB, n int) *Lab {
	t.Helper()
	var edges [][2]int
	for i := 1; i < n; i++ {
		edges = append(edges, [2]int{i, i + 1})
	}
	return NewGraph(t, n, edges)
}

// Ring builds n ≥ 3 hosts on a ring: 1-2-...-n-1.
func Ring(t testing.TB, n int) *Lab {
	t.Helper()
	if n < 3 {
		t.Fatalf("netlab: Ring of %d hosts; want at least 3", n)
	}
	var edges [][2]int
	for i := 1; i < n; i++ {
		edges = append(edges, [2]int{i, i + 1})
	}
	return NewGraph(t, n, append(edges, [2]int{1, n}))
}

// Edges lists a graph lab's edges, each as {a, b} with a < b, in the order
// NewGraph was given them; nil for a lab made by New.
func (l *Lab) Edges() [][2]int { return slices.Clone(l.edges) }

// Neighbours lists, ascending, the hosts that share an edge with host i;
// on a lab made by New, every other host.
func (l *Lab) Neighbours(i int) []int {
	l.check(i)
	var out []int
	for j := 1; j <= l.n; j++ {
		if j != i && (l.edges == nil || l.edge(i, j) >= 0) {
			out = append(out, j)
		}
	}
	return out
}

// EdgeAddr is host a's address on its edge to host b, an interface address
// distinct from the node address Addr(a).
func (l *Lab) EdgeAddr(a, b int) string {
	l.t.Helper()
	k := l.mustEdge("EdgeAddr", a, b)
	if l.edges[k][0] == a {
		return edgeAddr(k, 0)
	}
	return edgeAddr(k, 1)
}

// CutEdge silently cuts the edge between a and b: both hosts' routes to the
// other's node address go to a next hop that does not exist. Packets are
// dropped on the wire, no carrier changes and nothing answers with a
// reset or an ICMP error, so an established TCP connection between a and b
// just stalls (writes succeed into the send buffer, reads wait) and a new
// one times out. Other edges are untouched. RestoreEdge undoes it.
func (l *Lab) CutEdge(a, b int) {
	l.t.Helper()
	l.routeEdge(l.mustEdge("CutEdge", a, b), true)
}

// RestoreEdge puts back the routes CutEdge replaced. A connection that
// stalled resumes, with the same bytes in order, once TCP retransmits:
// after up to its current retransmission timeout, which doubles for each
// loss during the cut.
func (l *Lab) RestoreEdge(a, b int) {
	l.t.Helper()
	l.routeEdge(l.mustEdge("RestoreEdge", a, b), false)
}

// ResetEdge aborts every TCP connection between a and b at both ends at
// once, with SOCK_DESTROY ("ss -K"): each end's pending and later calls
// fail with ECONNABORTED, or ECONNRESET where the reset sent by the other
// end arrived first. The edge itself is not cut; after CutEdge it gives a
// cut with resets. It returns how many sockets it closed; 0 when there
// were none, or when the kernel lacks CONFIG_INET_DIAG_DESTROY, which ss
// does not report.
func (l *Lab) ResetEdge(a, b int) int {
	l.t.Helper()
	l.mustEdge("ResetEdge", a, b)
	closed := 0
	for _, p := range [][2]int{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		out, err := l.Command(from, "ss", "-K", "-H", "-t", "-n",
			"dst", l.Addr(to), "or", "dst", l.EdgeAddr(to, from)).CombinedOutput()
		if err != nil {
			l.t.Fatalf("netlab %s: ResetEdge(%d, %d): ss -K in host %d: %v: %s", l.name, a, b, from, err, strings.TrimSpace(string(out)))
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(line) != "" {
				closed++
			}
		}
	}
	return closed
}

// routeEdge sets, in both hosts of edge k, the route to the other's node
// address: through the edge, or through the dead gateway when cut.
func (l *Lab) routeEdge(k int, cut bool) {
	l.t.Helper()
	for end := range 2 {
		a, b := l.edges[k][end], l.edges[k][1-end]
		args := []string{"-n", l.Namespace(a), "route", "replace", l.Addr(b) + "/32"}
		if cut {
			args = append(args, "via", deadGateway, "dev", "eth0", "onlink")
		} else {
			args = append(args, "via", edgeAddr(k, 1-end), "dev", "eth0")
		}
		// The source is the node address, so the other end's answers
		// take its route back, whichever edge address carried them.
		l.must("ip", append(args, "src", l.Addr(a))...)
	}
}

// edge is the index of the edge between a and b, or -1.
func (l *Lab) edge(a, b int) int {
	if a > b {
		a, b = b, a
	}
	return slices.Index(l.edges, [2]int{a, b})
}

func (l *Lab) mustEdge(op string, a, b int) int {
	l.t.Helper()
	l.check(a)
	l.check(b)
	if l.edges == nil {
		l.t.Fatalf("netlab: %s: the lab was made by New, not NewGraph; it has no edges", op)
	}
	k := l.edge(a, b)
	if k < 0 {
		l.t.Fatalf("netlab: %s: no edge between hosts %d and %d", op, a, b)
	}
	return k
}

// edgeAddr is the address of end 0 (the lower host) or end 1 of edge k:
// the .1 and .2 of the k-th /30 in EdgeSubnet.
func edgeAddr(k, end int) string {
	v := k*4 + 1 + end
	return "10.252." + strconv.Itoa(v>>8) + "." + strconv.Itoa(v&0xff)
}

// normEdges checks edges against n hosts and orders each as {low, high}.
func normEdges(n int, edges [][2]int) ([][2]int, error) {
	if len(edges) > MaxEdges {
		return nil, fmt.Errorf("%d edges; at most %d", len(edges), MaxEdges)
	}
	out := make([][2]int, 0, len(edges))
	for _, e := range edges {
		a, b := min(e[0], e[1]), max(e[0], e[1])
		switch {
		case a < 1 || b > n:
			return nil, fmt.Errorf("edge %d-%d: hosts are 1..%d", e[0], e[1], n)
		case a == b:
			return nil, fmt.Errorf("edge %d-%d: a loop", e[0], e[1])
		case slices.Contains(out, [2]int{a, b}):
			return nil, fmt.Errorf("edge %d-%d: given twice", e[0], e[1])
		}
		out = append(out, [2]int{a, b})
	}
	return out, nil
}

// sysctl writes /proc/sys settings; under /proc/sys/net they are those of
// the calling thread's network namespace.
func sysctl(set map[string]string) error {
	for k, v := range set {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
		}
	}
	return nil
}
