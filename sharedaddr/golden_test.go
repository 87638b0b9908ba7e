package sharedaddr

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// rewrite is the -rewrite test flag: capture the sock_diag vectors anew
// (as root, in a fresh network namespace) and rewrite the derived ones.
var rewrite = flag.Bool("rewrite", false, "rewrite the golden files under testdata/ (captures need root)")

const diagDir = "testdata/diag"

type field struct {
	size int
	name string
}

// annotate names the bytes of a sock_diag datagram for a golden file. It
// restates SPEC.md's tables independently of the decoder, and is lenient:
// bytes it cannot place are listed as such.
func annotate(b []byte) []field {
	var fs []field
	add := func(n int, format string, args ...any) { fs = append(fs, field{n, fmt.Sprintf(format, args...)}) }
	off := 0
	for off < len(b) {
		rest := b[off:]
		if len(rest) < 16 {
			add(len(rest), "(too short for a netlink header)")
			break
		}
		n := int(binary.LittleEndian.Uint32(rest))
		typ := binary.LittleEndian.Uint16(rest[4:])
		add(4, "nlmsg_len (u32 host order) = %d", n)
		add(2, "nlmsg_type (u16) = %d", typ)
		add(2, "nlmsg_flags (u16) = %#x", binary.LittleEndian.Uint16(rest[6:]))
		add(4, "nlmsg_seq (u32) = %d", binary.LittleEndian.Uint32(rest[8:]))
		add(4, "nlmsg_pid (u32)")
		if n < 16 || n > len(rest) {
			if len(rest) > 16 {
				add(len(rest)-16, "(beyond a bad nlmsg_len)")
			}
			break
		}
		body := rest[16:n]
		switch {
		case typ == sockDiagByFamily && len(body) >= 72:
			add(1, "idiag_family = %d", body[0])
			add(1, "idiag_state = %d", body[1])
			add(1, "idiag_timer")
			add(1, "idiag_retrans")
			add(2, "id.idiag_sport (be16) = %d", binary.BigEndian.Uint16(body[4:]))
			add(2, "id.idiag_dport (be16) = %d", binary.BigEndian.Uint16(body[6:]))
			add(16, "id.idiag_src (4 or 16 bytes used)")
			add(16, "id.idiag_dst")
			add(4, "id.idiag_if (u32)")
			add(8, "id.idiag_cookie (2 x u32, low first)")
			add(4, "idiag_expires (u32)")
			add(4, "idiag_rqueue (u32)")
			add(4, "idiag_wqueue (u32)")
			add(4, "idiag_uid (u32)")
			add(4, "idiag_inode (u32)")
			for a := body[72:]; len(a) > 0; {
				if len(a) < 4 {
					add(len(a), "(too short for an attribute)")
					break
				}
				al := int(binary.LittleEndian.Uint16(a))
				add(2, "rta_len (u16) = %d", al)
				add(2, "rta_type (u16) = %d", binary.LittleEndian.Uint16(a[2:]))
				if al < 4 || al > len(a) {
					add(len(a)-4, "(beyond a bad rta_len)")
					break
				}
				if al > 4 {
					add(al-4, "attribute payload")
				}
				step := min(align4(al), len(a))
				if step > al {
					add(step-al, "attribute padding")
				}
				a = a[step:]
			}
		case (typ == nlmsgDone || typ == nlmsgError) && len(body) >= 4:
			add(4, "error (s32) = %d", int32(binary.LittleEndian.Uint32(body)))
			if len(body) > 4 {
				add(len(body)-4, "the request echoed")
			}
		case len(body) > 0:
			add(len(body), "body")
		}
		step := min(align4(n), len(rest))
		if step > n {
			add(step-n, "message padding")
		}
		off += step
	}
	return fs
}

// formatVector renders a golden file: comments, then offset, hex and the
// field names.
func formatVector(comment []string, data []byte) string {
	var sb strings.Builder
	for _, c := range comment {
		sb.WriteString(strings.TrimRight("# "+c, " ") + "\n")
	}
	off := 0
	for _, f := range annotate(data) {
		b := data[off : off+f.size]
		for first := true; first || len(b) > 0; first = false {
			n := min(len(b), 16)
			var hex strings.Builder
			for i, c := range b[:n] {
				if i > 0 {
					hex.WriteByte(' ')
				}
				fmt.Fprintf(&hex, "%02x", c)
			}
			name := ""
			if first {
				name = "# " + f.name
			}
			fmt.Fprintf(&sb, "%04x: %-47s %s\n", off, hex.String(), name)
			off += n
			b = b[n:]
		}
	}
	return strings.ReplaceAll(sb.String(), "  \n", "\n")
}

// parseVector returns the bytes, the "# seq:" and the "# expect:" lines
// of a golden file.
func parseVector(text string) (data []byte, seq uint32, expect []string, err error) {
	for i, line := range strings.Split(text, "\n") {
		if c, ok := strings.CutPrefix(line, "# seq: "); ok {
			n, err := strconv.ParseUint(c, 10, 32)
			if err != nil {
				return nil, 0, nil, fmt.Errorf("line %d: %v", i+1, err)
			}
			seq = uint32(n)
		}
		if c, ok := strings.CutPrefix(line, "# expect: "); ok {
			expect = append(expect, c)
		}
		line, _, _ = strings.Cut(line, "#")
		tok := strings.Fields(line)
		if len(tok) == 0 {
			continue
		}
		off, ok := strings.CutSuffix(tok[0], ":")
		n, perr := strconv.ParseUint(off, 16, 32)
		if !ok || perr != nil || int(n) != len(data) {
			return nil, 0, nil, fmt.Errorf("line %d: offset %q, but %d bytes precede it", i+1, tok[0], len(data))
		}
		for _, t := range tok[1:] {
			c, err := strconv.ParseUint(t, 16, 8)
			if err != nil || len(t) != 2 {
				return nil, 0, nil, fmt.Errorf("line %d: %q is not a hex byte", i+1, t)
			}
			data = append(data, byte(c))
		}
	}
	return data, seq, expect, nil
}

// expectLines is what the decoder makes of a datagram, as "# expect:"
// lines.
func expectLines(data []byte, seq uint32) []string {
	msgs, done, err := decodeDiag(data, seq)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	out := []string{fmt.Sprintf("ok: %d sockets, done %v", len(msgs), done)}
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("  family %d %s %s %s attrs %d", m.Family, m.State, m.Local, m.Remote, m.Attrs))
	}
	return out
}

func vectorText(comment []string, data []byte, seq uint32) string {
	c := append(slices.Clone(comment), fmt.Sprintf("seq: %d", seq))
	for _, e := range expectLines(data, seq) {
		c = append(c, "expect: "+e)
	}
	return formatVector(c, data)
}

// checkVector compares want with the file, or writes it with -rewrite.
func checkVector(t *testing.T, name, want string) {
	t.Helper()
	path := filepath.Join(diagDir, name+".hex")
	if *rewrite {
		if err := os.MkdirAll(diagDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -rewrite as root to create it)", err)
	}
	if string(got) != want {
		t.Errorf("%s does not match the code:\n--- file\n%s\n--- code\n%s\n(run go test -rewrite if the change is intended and SPEC.md says so)", path, got, want)
	}
}

// TestDiagVectors decodes every golden file and compares the result with
// the file's "# expect:" lines: the captures, whose expectations were
// checked against the live sockets when they were taken, and the
// malformed vectors derived from them.
func TestDiagVectors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(diagDir, "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden vectors under " + diagDir)
	}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data, seq, expect, err := parseVector(string(text))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got := expectLines(data, seq); !slices.Equal(got, expect) {
			t.Errorf("%s: decoded\n  %s\nfile expects\n  %s", f, strings.Join(got, "\n  "), strings.Join(expect, "\n  "))
		}
		_, _, derr := decodeDiag(data, seq)
		isErr := strings.HasPrefix(filepath.Base(f), "err_")
		var errno syscall.Errno
		switch {
		case isErr && !errors.Is(derr, ErrMalformed) && !errors.As(derr, &errno):
			t.Errorf("%s: error %v wraps neither ErrMalformed nor an errno", f, derr)
		case !isErr && derr != nil:
			t.Errorf("%s: %v", f, derr)
		}
	}
}

// mutations derive malformed datagrams from a captured one that holds at
// least one socket message.
var mutations = []struct {
	name, what string
	fn         func(b []byte) []byte
}{
	{"err_short_header", "the first 10 bytes: too short for a netlink header", func(b []byte) []byte { return b[:10] }},
	{"err_len_overrun", "nlmsg_len 4 bytes longer than the datagram", func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b, uint32(len(b)+4))
		return b
	}},
	{"err_len_small", "nlmsg_len 8, shorter than the header", func(b []byte) []byte { binary.LittleEndian.PutUint32(b, 8); return b }},
	{"err_seq", "a sequence number other than the request's", func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[8:], binary.LittleEndian.Uint32(b[8:])+1)
		return b
	}},
	{"err_type", "message type 99", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[4:], 99); return b }},
	{"err_dump_intr", "NLM_F_DUMP_INTR set: the dump is inconsistent", func(b []byte) []byte {
		binary.LittleEndian.PutUint16(b[6:], binary.LittleEndian.Uint16(b[6:])|nlmFDumpIntr)
		return b
	}},
	{"err_family", "address family 7", func(b []byte) []byte { b[16] = 7; return b }},
	{"err_state", "TCP state 0", func(b []byte) []byte { b[17] = 0; return b }},
	{"err_msg_short", "one message whose inet_diag_msg is cut to 40 bytes", func(b []byte) []byte {
		b = b[:16+40]
		binary.LittleEndian.PutUint32(b, uint32(len(b)))
		return b
	}},
	{"err_attr_overrun", "the first message alone, with an attribute of length 200 appended", func(b []byte) []byte {
		n := int(binary.LittleEndian.Uint32(b))
		b = append(b[:n:n], 200, 0, 1, 0)
		binary.LittleEndian.PutUint32(b, uint32(len(b)))
		return b
	}},
	{"err_after_done", "the first message, NLMSG_DONE, then 8 stray bytes", func(b []byte) []byte {
		n := int(binary.LittleEndian.Uint32(b))
		b = append(b[:n:n], doneMsg(binary.LittleEndian.Uint32(b[8:]), 0)...)
		return append(b, 1, 2, 3, 4, 5, 6, 7, 8)
	}},
	{"err_netlink_eperm", "NLMSG_ERROR with -EPERM, as a kernel refusing the dump sends it", func(b []byte) []byte {
		m := doneMsg(binary.LittleEndian.Uint32(b[8:]), -1)
		binary.LittleEndian.PutUint16(m[4:], nlmsgError)
		return m
	}},
	{"err_done_eintr", "NLMSG_DONE carrying -EINTR", func(b []byte) []byte { return doneMsg(binary.LittleEndian.Uint32(b[8:]), -4) }},
	{"ok_done_only", "NLMSG_DONE alone: the end of a dump", func(b []byte) []byte { return doneMsg(binary.LittleEndian.Uint32(b[8:]), 0) }},
}

func doneMsg(seq uint32, e int32) []byte {
	m := make([]byte, 20)
	binary.LittleEndian.PutUint32(m, 20)
	binary.LittleEndian.PutUint16(m[4:], nlmsgDone)
	binary.LittleEndian.PutUint16(m[6:], 2) // NLM_F_MULTI
	binary.LittleEndian.PutUint32(m[8:], seq)
	binary.LittleEndian.PutUint32(m[16:], uint32(e))
	return m
}

// TestDiagDerivedVectors checks (or, with -rewrite, writes) the malformed
// vectors made from the first capture.
func TestDiagDerivedVectors(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(diagDir, "capture_v4_1.hex"))
	if err != nil {
		t.Fatalf("%v (run go test -rewrite as root to capture it)", err)
	}
	base, seq, _, err := parseVector(string(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mutations {
		data := m.fn(slices.Clone(base))
		checkVector(t, m.name, vectorText([]string{"Derived from capture_v4_1: " + m.what + "."}, data, seq))
	}
}

// FuzzDecodeDiag feeds the decoder arbitrary datagrams: it must not panic,
// its errors are typed, and what it accepts is well formed.
func FuzzDecodeDiag(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(diagDir, "*.hex"))
	for _, p := range files {
		text, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		data, seq, _, err := parseVector(string(text))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, seq)
	}
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32) {
		msgs, _, err := decodeDiag(b, seq)
		if err != nil {
			var errno syscall.Errno
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &errno) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(msgs)*(nlmsgHdrLen+inetDiagMsgLen) > len(b) {
			t.Fatalf("%d messages from %d bytes", len(msgs), len(b))
		}
		for _, m := range msgs {
			if m.Family != afInet && m.Family != afInet6 {
				t.Fatalf("accepted family %d", m.Family)
			}
			if m.Local.Addr().Is4() != (m.Family == afInet) {
				t.Fatalf("family %d with address %s", m.Family, m.Local)
			}
		}
	})
}
