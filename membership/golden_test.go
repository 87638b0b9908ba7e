package membership

import (
	"reflect"
	"testing"
)

// TestCommandGolden pins the byte layout of each op (SPEC.md "Command").
func TestCommandGolden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		comment string
		cmd     Command
	}{
		{"cmd-join.hex", "JOIN of node 1, incarnation 0x11, voter, name n1, addr 127.0.0.1:7946.", jn(1, 0x11, true)},
		{"cmd-leave.hex", "LEAVE of node 2, incarnation 0x22, cause failed.", lv(2, 0x22, CauseFailed)},
		{"cmd-promote.hex", "PROMOTE of node 3, incarnation 0x33.", Command{Op: OpPromote, ID: 3, Incarnation: 0x33, Voter: true}},
		{"cmd-set-cluster-id.hex", "SET-CLUSTER-ID c022a10000000001 proposed by node 1: the v1 fields, then the id (u64).", Command{Op: OpSetClusterID, ID: 1, Cluster: testCluster}},
	} {
		b := checkGolden(t, tc.name, []string{"Membership command v1 (SPEC.md \"Command\"): " + tc.comment}, tc.cmd.Marshal())
		got, err := ParseCommand(b)
		if err != nil || !reflect.DeepEqual(got, tc.cmd) {
			t.Errorf("%s: decoded %+v, %v", tc.name, got, err)
		}
	}
}
