package event_test

import (
	"errors"
	"testing"

	"github.com/corralhq/corral/types/event"
)

// Golden descriptor values: class<<22 | event (seed §4.1).
var descGolden = []struct {
	d     event.Descriptor
	value uint32
	name  string
	cname string
}{
	{event.CSInvalid, 0x00400000, "CS_INVALID", "OC_EV_CS_INVALID"},
	{event.CSInterfaceAdded, 0x00400001, "INTERFACE_ADDED", "OC_EV_CS_INTERFACE_ADDED"},
	{event.CSInterfaceFailed, 0x00400002, "INTERFACE_FAILED", "OC_EV_CS_INTERFACE_FAILED"},
	{event.CSNodeEligible, 0x00400003, "NODE_ELIGIBLE", "OC_EV_CS_NODE_ELIGIBLE"},
	{event.CSNodeIneligible, 0x00400004, "NODE_INELIGIBLE", "OC_EV_CS_NODE_INELIGIBLE"},
	{event.CSP2PEstablished, 0x00400005, "P2P_ESTABLISHED", "OC_EV_CS_P2P_ESTABLISHED"},
	{event.CSP2PLost, 0x00400006, "P2P_LOST", "OC_EV_CS_P2P_LOST"},
	{event.MSInvalid, 0x00800000, "MS_INVALID", "OC_EV_MS_INVALID"},
	{event.MSNewView, 0x00800001, "NEWVIEW", "OC_EV_MS_NEWVIEW"},
	{event.MSSuspect, 0x00800002, "SUSPECT", "OC_EV_MS_SUSPECT"},
	{event.MSRecovered, 0x00800003, "RECOVERED", "OC_EV_MS_RECOVERED"},
	{event.MSShutdown, 0x00800004, "SHUTDOWN", "OC_EV_MS_SHUTDOWN"},
	{event.MSEvicted, 0x00800005, "EVICTED", "OC_EV_MS_EVICTED"},
	{event.GSInvalid, 0x00c00000, "GS_INVALID", "OC_EV_GS_INVALID"},
	{event.GSJoin, 0x00c00001, "JOIN", "OC_EV_GS_JOIN"},
	{event.GSLeave, 0x00c00002, "LEAVE", "OC_EV_GS_LEAVE"},
	{event.GSBroadcast, 0x00c00003, "BROADCAST", "OC_EV_GS_BROADCAST"},
	{event.GSMulticast, 0x00c00004, "MULTICAST", "OC_EV_GS_MULTICAST"},
	{event.GSUnicast, 0x00c00005, "UNICAST", "OC_EV_GS_UNICAST"},
	{event.GSReply, 0x00c00006, "REPLY", "OC_EV_GS_REPLY"},
}

func TestDescriptorGolden(t *testing.T) {
	for _, g := range descGolden {
		if uint32(g.d) != g.value {
			t.Errorf("%s = %#08x, want %#08x", g.name, uint32(g.d), g.value)
		}
		if got := g.d.String(); got != g.name {
			t.Errorf("%#08x.String() = %q, want %q", g.value, got, g.name)
		}
		if got := g.d.CName(); got != g.cname {
			t.Errorf("%#08x.CName() = %q, want %q", g.value, got, g.cname)
		}
		if got := event.MakeDescriptor(g.d.Class(), g.d.Event()); got != g.d {
			t.Errorf("MakeDescriptor(%v, %d) = %#x, want %#x", g.d.Class(), g.d.Event(), got, g.d)
		}
		if g.value>>22 != uint32(g.d.Class()) || g.value&(1<<22-1) != g.d.Event() {
			t.Errorf("%s: class %d event %d do not match %#08x", g.name, g.d.Class(), g.d.Event(), g.value)
		}
		for _, s := range []string{g.name, g.cname} {
			if d, err := event.ParseDescriptor(s); err != nil || d != g.d {
				t.Errorf("ParseDescriptor(%q) = %v, %v; want %v", s, d, err, g.d)
			}
		}
		if want := g.d.Event() != 0; g.d.Valid() != want {
			t.Errorf("%s.Valid() = %v, want %v", g.name, !want, want)
		}
	}
}

func TestDescriptorLayout(t *testing.T) {
	// Like OC_EV_SET_CLASS, MakeDescriptor masks the event to 22 bits and
	// keeps the class in the upper 10.
	d := event.MakeDescriptor(event.ClassMemb, 1<<22|1)
	if d != event.MSNewView {
		t.Errorf("event not masked: %#x", uint32(d))
	}
	if d := event.MakeDescriptor(1023, event.EventMask); uint32(d) != 0xffffffff {
		t.Errorf("MakeDescriptor(1023, mask) = %#x", uint32(d))
	}
	if event.ClassShift+event.EventShift != 32 || event.EventMask != 0x3fffff {
		t.Errorf("layout constants: shift %d, width %d, mask %#x", event.ClassShift, event.EventShift, event.EventMask)
	}
	if got := event.Descriptor(0x00800009).String(); got != "Descriptor(0x00800009)" {
		t.Errorf("unknown descriptor String = %q", got)
	}
	if event.Descriptor(0x00800009).Valid() {
		t.Error("unknown descriptor is Valid")
	}
}

func TestParse(t *testing.T) {
	if d, err := event.ParseDescriptor("newView"); err != nil || d != event.MSNewView {
		t.Errorf("ParseDescriptor is case-sensitive: %v, %v", d, err)
	}
	for _, s := range []string{"", "NEW_VIEW", "OC_EV_NEWVIEW", "INVALID"} {
		if _, err := event.ParseDescriptor(s); !errors.Is(err, event.ErrBadEvent) {
			t.Errorf("ParseDescriptor(%q) error = %v, want ErrBadEvent", s, err)
		}
	}
	for _, c := range []struct {
		s    string
		want event.Class
	}{{"COMM", event.ClassComm}, {"OC_EV_MEMB_CLASS", event.ClassMemb}, {"group", event.ClassGroup}} {
		if got, err := event.ParseClass(c.s); err != nil || got != c.want {
			t.Errorf("ParseClass(%q) = %v, %v", c.s, got, err)
		}
		if got, _ := event.ParseClass(c.want.String()); got != c.want {
			t.Errorf("ParseClass(String()) of %v = %v", c.want, got)
		}
	}
	if _, err := event.ParseClass("MS"); !errors.Is(err, event.ErrBadClass) {
		t.Errorf("ParseClass(MS) error = %v", err)
	}
}

// FuzzDescriptor checks that names round-trip and that the layout
// accessors invert MakeDescriptor for every 32-bit value.
func FuzzDescriptor(f *testing.F) {
	f.Add(uint32(0x00800001)) // NEWVIEW
	f.Add(uint32(0x00400000)) // CS_INVALID: named, not Valid
	f.Add(uint32(0x00c00007)) // one past REPLY
	f.Add(uint32(0xffffffff)) // class 1023, maximal event
	f.Add(uint32(0))          // class 0 does not exist
	f.Fuzz(func(t *testing.T, v uint32) {
		d := event.Descriptor(v)
		if event.MakeDescriptor(d.Class(), d.Event()) != d {
			t.Fatalf("layout does not round-trip for %#x", v)
		}
		got, err := event.ParseDescriptor(d.String())
		if d.CName() == "" {
			if err == nil || d.Valid() {
				t.Fatalf("unknown %#x parsed as %v or Valid", v, got)
			}
			return
		}
		if err != nil || got != d {
			t.Fatalf("ParseDescriptor(%q) = %v, %v; want %#x", d.String(), got, err, v)
		}
	})
}

func TestLeaveReasonString(t *testing.T) {
	for r, want := range map[event.LeaveReason]string{
		event.LeaveLeft: "left", event.LeaveProcDown: "process down", event.LeaveNodeDown: "node down", event.LeaveBehind: "behind",
		event.LeaveNone: "none", 5: "reason 5",
	} {
		if got := r.String(); got != want {
			t.Errorf("event.LeaveReason(%d) = %q, want %q", r, got, want)
		}
		if r.Valid() != (r <= event.LeaveBehind) {
			t.Errorf("event.LeaveReason(%d).Valid() = %v", r, r.Valid())
		}
	}
}
