package netlab

import (
	"slices"
	"testing"
)

// Edge addresses are the .1 and .2 of consecutive /30s, carrying over into
// the third octet; they must never repeat up to MaxEdges.
func TestEdgeAddr(t *testing.T) {
	for _, c := range []struct {
		k, end int
		want   string
	}{
		{0, 0, "10.252.0.1"}, {0, 1, "10.252.0.2"},
		{1, 0, "10.252.0.5"}, {63, 1, "10.252.0.254"},
		{64, 0, "10.252.1.1"}, {MaxEdges - 1, 1, "10.252.255.254"},
	} {
		if got := edgeAddr(c.k, c.end); got != c.want {
			t.Errorf("edgeAddr(%d, %d) = %s; want %s", c.k, c.end, got, c.want)
		}
	}
	seen := make(map[string]bool)
	for k := range MaxEdges {
		for end := range 2 {
			a := edgeAddr(k, end)
			if seen[a] {
				t.Fatalf("edgeAddr(%d, %d) = %s again", k, end, a)
			}
			seen[a] = true
		}
	}
}

func TestNormEdges(t *testing.T) {
	got, err := normEdges(4, [][2]int{{2, 1}, {3, 4}, {1, 4}})
	if err != nil || !slices.Equal(got, [][2]int{{1, 2}, {3, 4}, {1, 4}}) {
		t.Errorf("normEdges = %v, %v", got, err)
	}
	for _, bad := range [][][2]int{{{1, 1}}, {{1, 2}, {2, 1}}, {{0, 1}}, {{1, 5}}} {
		if _, err := normEdges(4, bad); err == nil {
			t.Errorf("normEdges(4, %v): no error", bad)
		}
	}
	if _, err := normEdges(250, make([][2]int, MaxEdges+1)); err == nil {
		t.Error("normEdges: too many edges accepted")
	}
}
