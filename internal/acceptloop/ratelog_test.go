package acceptloop

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestKeyedWithin: many keys at once pass the overall rate too.
func TestKeyedWithin(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	k := NewKeyedRateLog(log, time.Minute, clock).Within(NewRateLog(log, time.Second, clock))
	for i := range 50 {
		k.Log(fmt.Sprint("10.0.0.", i), slog.LevelWarn, "refused")
		now = now.Add(20 * time.Millisecond) // 50 hosts in one second
	}
	if n := strings.Count(buf.String(), "refused"); n != 1 {
		t.Errorf("%d lines for 50 hosts within a second, want 1:\n%s", n, buf.String())
	}
}
