package events_test

import (
	"errors"
	"testing"

	"github.com/corralhq/corral/events"
)

// Golden descriptor values: class<<22 | event (seed §4.1).
var descGolden = []struct {
	d     events.Descriptor
	value uint32
	name  string
	cname string
}{
	{events.CSInvalid, 0x00400000, "CS_INVALID", "OC_EV_CS_INVALID"},
	{events.CSInterfaceAdded, 0x00400001, "INTERFACE_ADDED", "OC_EV_CS_INTERFACE_ADDED"},
	{events.CSInterfaceFailed, 0x00400002, "INTERFACE_FAILED", "OC_EV_CS_INTERFACE_FAILED"},
	{events.CSNodeEligible, 0x00400003, "NODE_ELIGIBLE", "OC_EV_CS_NODE_ELIGIBLE"},
	{events.CSNodeIneligible, 0x00400004, "NODE_INELIGIBLE", "OC_EV_CS_NODE_INELIGIBLE"},
	{events.CSP2PEstablished, 0x00400005, "P2P_ESTABLISHED", "OC_EV_CS_P2P_ESTABLISHED"},
	{events.CSP2PLost, 0x00400006, "P2P_LOST", "OC_EV_CS_P2P_LOST"},
	{events.MSInvalid, 0x00800000, "MS_INVALID", "OC_EV_MS_INVALID"},
	{events.MSNewView, 0x00800001, "NEWVIEW", "OC_EV_MS_NEWVIEW"},
	{events.MSSuspect, 0x00800002, "SUSPECT", "OC_EV_MS_SUSPECT"},
	{events.MSRecovered, 0x00800003, "RECOVERED", "OC_EV_MS_RECOVERED"},
	{events.MSShutdown, 0x00800004, "SHUTDOWN", "OC_EV_MS_SHUTDOWN"},
	{events.MSEvicted, 0x00800005, "EVICTED", "OC_EV_MS_EVICTED"},
	{events.GSInvalid, 0x00c00000, "GS_INVALID", "OC_EV_GS_INVALID"},
	{events.GSJoin, 0x00c00001, "JOIN", "OC_EV_GS_JOIN"},
	{events.GSLeave, 0x00c00002, "LEAVE", "OC_EV_GS_LEAVE"},
	{events.GSBroadcast, 0x00c00003, "BROADCAST", "OC_EV_GS_BROADCAST"},
	{events.GSMulticast, 0x00c00004, "MULTICAST", "OC_EV_GS_MULTICAST"},
	{events.GSUnicast, 0x00c00005, "UNICAST", "OC_EV_GS_UNICAST"},
	{events.GSReply, 0x00c00006, "REPLY", "OC_EV_GS_REPLY"},
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
		if got := events.MakeDescriptor(g.d.Class(), g.d.Event()); got != g.d {
			t.Errorf("MakeDescriptor(%v, %d) = %#x, want %#x", g.d.Class(), g.d.Event(), got, g.d)
		}
		if g.value>>22 != uint32(g.d.Class()) || g.value&(1<<22-1) != g.d.Event() {
			t.Errorf("%s: class %d event %d do not match %#08x", g.name, g.d.Class(), g.d.Event(), g.value)
		}
		for _, s := range []string{g.name, g.cname} {
			if d, err := events.ParseDescriptor(s); err != nil || d != g.d {
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
	d := events.MakeDescriptor(events.ClassMemb, 1<<22|1)
	if d != events.MSNewView {
		t.Errorf("event not masked: %#x", uint32(d))
	}
	if d := events.MakeDescriptor(1023, events.EventMask); uint32(d) != 0xffffffff {
		t.Errorf("MakeDescriptor(1023, mask) = %#x", uint32(d))
	}
	if events.ClassShift+events.EventShift != 32 || events.EventMask != 0x3fffff {
		t.Errorf("layout constants: shift %d, width %d, mask %#x", events.ClassShift, events.EventShift, events.EventMask)
	}
	if got := events.Descriptor(0x00800009).String(); got != "Descriptor(0x00800009)" {
		t.Errorf("unknown descriptor String = %q", got)
	}
	if events.Descriptor(0x00800009).Valid() {
		t.Error("unknown descriptor is Valid")
	}
}

func TestParse(t *testing.T) {
	if d, err := events.ParseDescriptor("newView"); err != nil || d != events.MSNewView {
		t.Errorf("ParseDescriptor is case-sensitive: %v, %v", d, err)
	}
	for _, s := range []string{"", "NEW_VIEW", "OC_EV_NEWVIEW", "INVALID"} {
		if _, err := events.ParseDescriptor(s); !errors.Is(err, events.ErrBadEvent) {
			t.Errorf("ParseDescriptor(%q) error = %v, want ErrBadEvent", s, err)
		}
	}
	for _, c := range []struct {
		s    string
		want events.Class
	}{{"COMM", events.ClassComm}, {"OC_EV_MEMB_CLASS", events.ClassMemb}, {"group", events.ClassGroup}} {
		if got, err := events.ParseClass(c.s); err != nil || got != c.want {
			t.Errorf("ParseClass(%q) = %v, %v", c.s, got, err)
		}
		if got, _ := events.ParseClass(c.want.String()); got != c.want {
			t.Errorf("ParseClass(String()) of %v = %v", c.want, got)
		}
	}
	if _, err := events.ParseClass("MS"); !errors.Is(err, events.ErrBadClass) {
		t.Errorf("ParseClass(MS) error = %v", err)
	}
}

func TestVersion(t *testing.T) {
	if v := events.Version(); v != (events.Ver{Major: 0, Minor: 1}) || v.String() != "0.1" {
		t.Errorf("Version() = %v, want 0.1 (seed §1.3)", v)
	}
	if events.Revision < 1 {
		t.Errorf("Revision = %d", events.Revision)
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
		d := events.Descriptor(v)
		if events.MakeDescriptor(d.Class(), d.Event()) != d {
			t.Fatalf("layout does not round-trip for %#x", v)
		}
		got, err := events.ParseDescriptor(d.String())
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
