package agent

import (
	"errors"
	"testing"
)

func TestPartErrorNamesPartOnce(t *testing.T) {
	for _, tc := range []struct{ name, err, want string }{
		{"cluster", "cluster: the raft node stopped", "agent: cluster: the raft node stopped"},
		{"mesh", "listen: address in use", "agent: mesh: listen: address in use"},
	} {
		if got := partError(tc.name, errors.New(tc.err)).Error(); got != tc.want {
			t.Errorf("partError(%q, %q) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
}
