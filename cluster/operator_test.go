package cluster

import (
	"testing"

	"github.com/corralhq/corral/membership"
)

func TestQuorumOf(t *testing.T) {
	v := membership.View{Instance: 9, Members: []membership.Member{
		{ID: 1, Incarnation: 11, Voter: true}, {ID: 2, Incarnation: 12, Voter: true}, {ID: 3, Incarnation: 13, Voter: true},
		{ID: 4, Incarnation: 14, Voter: true}, {ID: 5, Incarnation: 15, Voter: true}, {ID: 6, Incarnation: 16},
	}}
	links := func(ids ...uint64) func(uint64) bool {
		return func(id uint64) bool {
			for _, x := range ids {
				if x == id {
					return true
				}
			}
			return false
		}
	}
	for _, tc := range []struct {
		name      string
		self, inc uint64
		up        []uint64
		reach     int
		quorate   bool
	}{
		{"all up", 1, 11, []uint64{2, 3, 4, 5, 6}, 5, true},
		{"majority", 1, 11, []uint64{2}, 3 - 1, false}, // itself and 2 of 5: not a majority
		{"three of five", 1, 11, []uint64{2, 3}, 3, true},
		{"a non-voter link does not count", 1, 11, []uint64{2, 6}, 2, false},
		{"a stale life is no member", 1, 99, []uint64{2, 3, 4, 5}, 5, false},
		{"outside the view", 7, 17, []uint64{1, 2, 3, 4, 5}, 5, false},
	} {
		q := quorumOf(&v, tc.self, tc.inc, links(tc.up...))
		if q.Voters != 5 || q.Reachable != tc.reach || q.Quorate() != tc.quorate || q.Need() != 3 {
			t.Errorf("%s: %+v quorate %v need %d; want 5 voters, %d reachable, quorate %v, need 3", tc.name, q, q.Quorate(), q.Need(), tc.reach, tc.quorate)
		}
	}
	if q := quorumOf(&membership.View{}, 1, 11, links()); q.Quorate() || q.Need() != 1 {
		t.Errorf("empty view: %+v quorate %v", q, q.Quorate())
	}
}
