package events_test

import (
	"testing"

	"github.com/corralhq/corral/events"
)

func TestVersion(t *testing.T) {
	if v := events.Version(); v != (events.Ver{Major: 0, Minor: 1}) || v.String() != "0.1" {
		t.Errorf("Version() = %v, want 0.1 (seed §1.3)", v)
	}
	if events.Revision < 1 {
		t.Errorf("Revision = %d", events.Revision)
	}
}
