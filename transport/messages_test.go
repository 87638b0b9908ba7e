package transport

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/acceptloop"
	"github.com/corralhq/corral/proto"
)

// TestRefusalTextsSayItOnce: the errors both ends of a refused link show
// people name the code once, carry no package prefix of proto's own (the
// caller adds its prefix) and no "peer says" jargon.
func TestRefusalTextsSayItOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(a, b *Config)
		code  proto.Code
	}{
		{"wrong-key", func(a, b *Config) { a.Key = bytes.Repeat([]byte{8}, KeySize) }, proto.CodeKeyExchange},
		{"version", func(a, b *Config) { a.Ranges, b.Ranges = rng(1, 1), rng(2, 3) }, proto.CodeVersion},
		{"cluster", func(a, b *Config) { a.Cluster = "other" }, proto.CodeCluster},
		{"same-id", func(a, b *Config) { a.NodeID = b.NodeID }, proto.CodeNoPeer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, _ := testConfig(1, "a")
			cb, _ := testConfig(2, "b")
			tc.setup(ca, cb)
			c, s := pair(t, ca, cb, proto.ReasonJoin)
			for side, err := range map[string]error{"client": c.err, "server": s.err} {
				var pe *proto.Error
				if !errors.As(err, &pe) || pe.Code != tc.code {
					t.Fatalf("%s: %v, want code %s", side, err, tc.code)
				}
				msg := err.Error()
				if strings.Contains(msg, "corral:") || strings.Contains(msg, "proto:") || strings.Contains(msg, "peer says") {
					t.Errorf("%s: %q has a package prefix or jargon", side, msg)
				}
				if n := strings.Count(msg, tc.code.String()); n != 1 {
					t.Errorf("%s: %q names %q %d times", side, msg, tc.code, n)
				}
			}
		})
	}
}

// TestOldPeerText: a REJECT text from an agent that still prefixed its
// errors with "corral: " is shown without that prefix and the repeated
// code name.
func TestOldPeerText(t *testing.T) {
	rj := proto.Reject{Code: proto.CodeDupNode, Text: `corral: node id in use: node id 2 is in use by "n2"`}
	want := `node id in use: the peer refused the link: node id 2 is in use by "n2"`
	if got := rj.Err().Error(); !strings.HasPrefix(got, want) {
		t.Fatalf("%q, want it to start with %q", got, want)
	}
}

// TestRefusalsRateLimited: with Refusals set, a peer retrying with a wrong
// key gets one "refusing link" line a period on the accepting side.
func TestRefusalsRateLimited(t *testing.T) {
	cb, lb := testConfig(2, "b")
	cb.Refusals = acceptloop.NewKeyedRateLog(cb.Logger, time.Minute, nil)
	for range 5 {
		ca, _ := testConfig(1, "a")
		ca.Key = bytes.Repeat([]byte{8}, KeySize)
		_, s := pair(t, ca, cb, proto.ReasonJoin)
		wantCode(t, "server", s.err, proto.CodeKeyExchange)
	}
	if n := strings.Count(lb.String(), "refusing link"); n != 1 {
		t.Fatalf("%d refusal lines for 5 tries in a minute, want 1:\n%s", n, lb.String())
	}
}
