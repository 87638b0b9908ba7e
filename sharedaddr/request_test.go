package sharedaddr

import (
	"encoding/binary"
	"testing"
)

// The request restates SPEC.md's table.
func TestDiagRequest(t *testing.T) {
	b := diagRequest(afInet6, 7)
	le := binary.LittleEndian
	checks := []struct {
		name      string
		got, want uint32
	}{
		{"nlmsg_len", le.Uint32(b[0:]), 72},
		{"nlmsg_type", uint32(le.Uint16(b[4:])), 20},
		{"nlmsg_flags", uint32(le.Uint16(b[6:])), 0x301},
		{"nlmsg_seq", le.Uint32(b[8:]), 7},
		{"nlmsg_pid", le.Uint32(b[12:]), 0},
		{"sdiag_family", uint32(b[16]), 10},
		{"sdiag_protocol", uint32(b[17]), 6},
		{"idiag_ext", uint32(b[18]), 0},
		{"idiag_states", le.Uint32(b[20:]), 0x1ffe},
		{"idiag_sport", uint32(le.Uint16(b[24:])), 0},
		{"idiag_cookie[0]", le.Uint32(b[24+40:]), 0xffffffff},
		{"idiag_cookie[1]", le.Uint32(b[24+44:]), 0xffffffff},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if len(b) != 72 {
		t.Fatalf("request of %d bytes, want 72", len(b))
	}
}
