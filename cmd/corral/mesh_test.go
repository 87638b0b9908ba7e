package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
)

// TestMeshEchoOldAgent: against an agent whose admin protocol predates
// MESH_ECHO, corral mesh echo says the agent is too old and exits 2.
func TestMeshEchoOldAgent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	oldAgent(t, dir)
	out, err := exec.Command(binary, "mesh", "echo", "--data-dir", dir, "--to", "2").CombinedOutput()
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != exitTooOld || !strings.Contains(string(out), "agent too old for mesh echo") {
		t.Fatalf("mesh echo against an old agent: %v, output:\n%s", err, out)
	}
}

// TestMeshEchoError: the tool fails an echo for any frame lost,
// duplicated or reordered, or any error, and names LINKFAIL by its code.
func TestMeshEchoError(t *testing.T) {
	e := admin.MeshEcho{Target: 5, Count: 10, Size: 64}
	for _, c := range []struct {
		r    admin.MeshEchoResult
		want string // "" passes
	}{
		{admin.MeshEchoResult{Sent: 10, Received: 10}, ""},
		{admin.MeshEchoResult{Sent: 10, Received: 9}, "9 of 10 frames came back"},
		{admin.MeshEchoResult{Sent: 10, Received: 10, Duplicates: 1}, "1 duplicates"},
		{admin.MeshEchoResult{Sent: 10, Received: 10, OutOfOrder: 2}, "2 out of order"},
		{admin.MeshEchoResult{Sent: 4, Received: 3, Status: proto.Status{Code: proto.CodeLinkFail, Text: "link to node 4 lost"}},
			"mesh echo to node 5: link failed (code 44, LINKFAIL): link to node 4 lost"},
	} {
		err := echoError(e, c.r)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v failed: %v", c.r, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want %q", c.r, err, c.want)
		}
	}
}
