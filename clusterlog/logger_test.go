package clusterlog_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/corralhq/corral/clusterlog"
)

// syncBuf is a log sink several nodes write to at once.
type syncBuf struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestInfoLogIsCorralsOwn: at Info a node logs no line of raft's own (its
// votes and terms are Debug) and describes a conf change by type, raft id
// and context length, without dumping the context's binary bytes.
func TestInfoLogIsCorralsOwn(t *testing.T) {
	var out syncBuf
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := testCtx(t)
	c := newCluster(t, 3, func(cfg *clusterlog.Config) { cfg.Logger = log.With("node", cfg.ID) })
	lead := c.waitLeader(ctx)
	idx, err := c.nodes[lead].ProposeConfChange(ctx, clusterlog.ConfChange{Type: clusterlog.AddLearner, NodeID: 0x1a, Context: []byte{0, 1, 0xfe, 0xff}})
	if err != nil {
		t.Fatal(err)
	}
	c.waitApplied(ctx, idx, 1, 2, 3)
	text := out.String()
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "subsystem=clusterlog.raft") && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("raft line above Debug: %s", line)
		}
		if strings.Contains(line, "applied configuration change") && strings.Contains(line, "node_raft_id=1a") {
			if !strings.Contains(line, "change=AddLearner") || !strings.Contains(line, "context_bytes=4") || strings.Contains(line, `\x`) {
				t.Errorf("conf change line: %s", line)
			}
		}
	}
	if n := strings.Count(text, "node_raft_id=1a"); n < 3 {
		t.Errorf("%d conf change lines for raft id 1a, want one per node:\n%s", n, text)
	}
}
