package layers

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Module is the module path of corral.
const Module = "github.com/corralhq/corral"

// A layer is a row of the diagram: packages of rank r may import packages
// of lower rank, up to limit.
type layer struct {
	rank int
	// limit is the highest rank importable. Importing the same rank is
	// allowed only within one family (the same first path element, e.g.
	// mesh and mesh/route, events and events/eventstest) and, at rank 0,
	// between all leaves.
	limit int
	// also lists packages (patterns as in the table) importable despite
	// their rank.
	also []string
}

func down(rank int) layer { return layer{rank: rank, limit: rank - 1} }

// ranks encodes DESIGN.md's diagram. Keys are package paths relative to
// the module; "x/..." matches every package below x (not x itself). A
// package named like its parent plus "test" (clusterlog/clusterlogtest,
// events/eventstest) takes the parent's row. Rows of packages that do not
// exist yet are fine.
var ranks = map[string]layer{
	// 0 leaves: wire formats, data types, data-dir layout, build info.
	"proto":        {rank: 0, limit: 0},
	"proto/...":    {rank: 0, limit: 0},
	"types/...":    {rank: 0, limit: 0},
	"internal/...": {rank: 0, limit: 0},
	// The C library's Go test harness: the C decoder against the wire
	// leaves.
	"c/...": {rank: 0, limit: 0},
	// Test infrastructure: may use anything below cmd.
	"internal/netlab": {rank: 0, limit: 8},
	"internal/layers": {rank: 0, limit: 8},

	// 1 one link, the event dispatcher, the cluster log.
	"transport":  down(1),
	"events":     down(1),
	"clusterlog": {rank: 1, limit: 0}, // leaves only: raft and bbolt, no corral

	// 2 peers by node id, interface monitor.
	"mesh":       down(2),
	"mesh/...":   down(2),
	"mesh/route": down(2), // the pure routing core: leaves only, in fact
	"netmon":     down(2),
	"rsm":        down(3),
	"membership": down(4),
	"cluster":    down(5),
	"service":    down(6),

	// 7 services: never import each other (equal rank, other family).
	"eventstream":    down(7),
	"groups":         down(7),
	"dsvc":           down(7),
	"dsvc/...":       down(7),
	"dhcp":           {rank: 7, limit: 6, also: []string{"dsvc", "dsvc/..."}},
	"dhcp/...":       {rank: 7, limit: 6, also: []string{"dsvc", "dsvc/..."}},
	"sharedaddr":     down(7),
	"sharedaddr/...": down(7),
	"obs":            down(7),

	"agent":      down(8),
	"cmd/corral": {rank: 9, limit: 8, also: []string{"client", "client/..."}},
	// Benchmark helpers: programs beside cmd, below it what they drive.
	"bench/...": {rank: 9, limit: 8},

	// The client library sits beside cmd but below it only the link, the
	// dispatcher and the leaves: never the daemon or a service.
	"client":     {rank: 9, limit: 1},
	"client/...": {rank: 9, limit: 1},
}

// lookup returns the row of pkg (relative to the module).
func lookup(table map[string]layer, pkg string) (layer, bool) {
	if l, ok := table[pkg]; ok {
		return l, true
	}
	if dir, base := path.Split(pkg); dir != "" {
		parent := strings.TrimSuffix(dir, "/")
		if base == path.Base(parent)+"test" {
			if l, ok := lookup(table, parent); ok {
				return l, true
			}
		}
	}
	for p := pkg; ; {
		dir := path.Dir(p)
		if dir == "." || dir == "/" {
			return layer{}, false
		}
		if l, ok := table[dir+"/..."]; ok {
			return l, true
		}
		p = dir
	}
}

func matches(pattern, pkg string) bool {
	if dir, ok := strings.CutSuffix(pattern, "/..."); ok {
		return strings.HasPrefix(pkg, dir+"/")
	}
	return pattern == pkg
}

func family(pkg string) string {
	first, _, _ := strings.Cut(pkg, "/")
	return first
}

// check returns one line per import that points up the table, as
// "a -> b (rank x -> y)", and one per package the table does not place.
// graph maps each package (relative to the module) to the corral packages
// it imports, also relative. The result is sorted.
func check(table map[string]layer, graph map[string][]string) []string {
	var bad []string
	missing := map[string]bool{}
	place := func(pkg string) (layer, bool) {
		l, ok := lookup(table, pkg)
		if !ok && !missing[pkg] {
			missing[pkg] = true
			bad = append(bad, fmt.Sprintf("%s: not in the rank table; add it to ranks in internal/layers/rank.go, in the row of DESIGN.md's diagram it belongs to", pkg))
		}
		return l, ok
	}
	for pkg, imports := range graph {
		from, ok := place(pkg)
		for _, imp := range imports {
			to, ok2 := place(imp)
			if !ok || !ok2 {
				continue
			}
			if allowed(from, to, pkg, imp) {
				continue
			}
			bad = append(bad, fmt.Sprintf("%s -> %s (rank %d -> %d)", pkg, imp, from.rank, to.rank))
		}
	}
	slices.Sort(bad)
	return bad
}

func allowed(from, to layer, pkg, imp string) bool {
	for _, p := range from.also {
		if matches(p, imp) {
			return true
		}
	}
	switch {
	case to.rank <= from.limit && to.rank < from.rank:
		return true
	case to.rank <= from.limit && to.rank == from.rank:
		return from.rank == 0 || family(pkg) == family(imp)
	case to.rank == from.rank && family(pkg) == family(imp):
		// A package and its own subpackages or test sibling.
		return true
	}
	return false
}
