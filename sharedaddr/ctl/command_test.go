package ctl_test

import (
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// A long text is cut at a rune's start: the reply still parses.
func TestReplyTextCut(t *testing.T) {
	r := ctl.Reply{Code: ctl.BadField, Text: "x" + strings.Repeat("é", ctl.MaxText)}
	got, err := ctl.ParseReply(ctl.AppendReply(nil, r))
	if err != nil || len(got.Text) != ctl.MaxText-1 || !strings.HasPrefix(r.Text, got.Text) {
		t.Fatalf("ParseReply = %d bytes, %v", len(got.Text), err)
	}
}

// An affinity beyond the field saturates instead of wrapping.
func TestAffinitySaturates(t *testing.T) {
	c := ctl.Cmd{Op: ctl.OpAdd, Policy: ctl.Sticky, Affinity: 100 * 24 * time.Hour}
	got, err := ctl.ParseCmd(ctl.AppendCmd(nil, c))
	if err != nil || got.Affinity != (1<<32-1)*time.Millisecond {
		t.Fatalf("affinity %v, %v", got.Affinity, err)
	}
}
