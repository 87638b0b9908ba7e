package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// quorumRow is the quorum a node's own row of `members --json` carries.
type quorumRow struct {
	State     string `json:"state"`
	Quorate   *bool  `json:"quorate"`
	Voters    int    `json:"voters"`
	Reachable int    `json:"voters_reachable"`
	Need      int    `json:"quorum_need"`
}

func (nd *node) quorum() (quorumRow, error) {
	out, err := exec.Command(binary, "members", "--data-dir", nd.dir, "--json").Output()
	if err != nil {
		return quorumRow{}, fmt.Errorf("members on n%d: %w", nd.id, err)
	}
	var rows []quorumRow
	if err := json.Unmarshal(out, &rows); err != nil {
		return quorumRow{}, fmt.Errorf("members on n%d: %w: %s", nd.id, err, out)
	}
	for _, r := range rows {
		if r.State == "self" && r.Quorate != nil {
			return r, nil
		}
	}
	return quorumRow{}, fmt.Errorf("members on n%d: no quorum on the self row: %s", nd.id, out)
}

// corral runs the tool and returns its combined output.
func corral(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	return string(out), err
}

// Item 6: `corral members` says whether the cluster has quorum, and why
// not, in text and JSON.
func TestMembersSaysQuorate(t *testing.T) {
	nodes := formed(t, 3)
	eventually(t, 10*time.Second, "quorate", func() error {
		out, err := corral(t, "members", "--data-dir", nodes[0].dir)
		if err != nil || !strings.Contains(out, "Quorate: yes (3 of 3 voters reachable, need 2)") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	nodes[1].kill()
	nodes[2].kill()
	eventually(t, 10*time.Second, "not quorate", func() error {
		out, err := corral(t, "members", "--data-dir", nodes[0].dir)
		if err != nil || !strings.Contains(out, "Quorate: no (1 of 3 voters reachable, need 2)") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	q, err := nodes[0].quorum()
	if err != nil {
		t.Fatal(err)
	}
	if *q.Quorate || q.Voters != 3 || q.Reachable != 1 || q.Need != 2 {
		t.Fatalf("members --json: %+v, want not quorate, 1 of 3 voters, need 2", q)
	}
}
