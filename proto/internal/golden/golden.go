package golden

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Rewrite is the -rewrite test flag: write golden files instead of
// comparing against them.
var Rewrite = flag.Bool("rewrite", false, "rewrite the golden files under testdata/ from the encoders")

// Field names the bytes at the current offset; fields are laid out in
// order from offset 0. A field of size 0 is listed as a comment line.
type Field struct {
	Size int
	Name string
}

// Fields is a builder for a field list.
type Fields []Field

// Add appends a field of n bytes.
func (fs *Fields) Add(n int, format string, args ...any) {
	*fs = append(*fs, Field{Size: n, Name: fmt.Sprintf(format, args...)})
}

// Size returns the total size of the fields.
func (fs Fields) Size() int {
	n := 0
	for _, f := range fs {
		n += f.Size
	}
	return n
}

const bytesPerLine = 16

// Format renders data as a golden file: each comment line prefixed with
// "# ", then the data lines. Fields annotate the data; bytes beyond the
// fields are listed unnamed, and fields beyond the data are listed as
// missing, which is how truncated vectors show what was cut off.
func Format(comment []string, data []byte, fields []Field) string {
	var sb strings.Builder
	for _, c := range comment {
		sb.WriteString(strings.TrimRight("# "+c, " "))
		sb.WriteByte('\n')
	}
	off := 0
	row := func(b []byte, name string) {
		for first := true; first || len(b) > 0; first = false {
			n := min(len(b), bytesPerLine)
			var hex strings.Builder
			for i, c := range b[:n] {
				if i > 0 {
					hex.WriteByte(' ')
				}
				fmt.Fprintf(&hex, "%02x", c)
			}
			line := fmt.Sprintf("%04x: %-47s", off, hex.String())
			if first && name != "" {
				line += "  # " + name
			}
			sb.WriteString(strings.TrimRight(line, " "))
			sb.WriteByte('\n')
			off += n
			b = b[n:]
		}
	}
	for _, f := range fields {
		switch {
		case off >= len(data):
			fmt.Fprintf(&sb, "#     %s: missing (%d bytes)\n", f.Name, f.Size)
		case f.Size == 0:
			fmt.Fprintf(&sb, "#     %s: empty\n", f.Name)
		case off+f.Size > len(data):
			row(data[off:], fmt.Sprintf("%s (truncated: %d of %d bytes)", f.Name, len(data)-off, f.Size))
		default:
			row(data[off:off+f.Size], f.Name)
		}
	}
	if off < len(data) {
		name := ""
		if len(fields) > 0 {
			name = "(not part of the message)"
		}
		row(data[off:], name)
	}
	return sb.String()
}

// Parse returns the bytes of a golden file. Offsets must match the bytes
// read so far, which catches a hand edit that drops or adds a byte.
func Parse(text string) ([]byte, error) {
	var data []byte
	for i, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		tok := strings.Fields(line)
		if len(tok) == 0 {
			continue
		}
		off, ok := strings.CutSuffix(tok[0], ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want an offset like 0010:, got %q", i+1, tok[0])
		}
		n, err := strconv.ParseUint(off, 16, 32)
		if err != nil || int(n) != len(data) {
			return nil, fmt.Errorf("line %d: offset %s, but %d bytes precede it", i+1, off, len(data))
		}
		for _, t := range tok[1:] {
			c, err := strconv.ParseUint(t, 16, 8)
			if err != nil || len(t) != 2 {
				return nil, fmt.Errorf("line %d: %q is not a hex byte", i+1, t)
			}
			data = append(data, byte(c))
		}
	}
	return data, nil
}

// Check compares want with the file at path, or writes it with -rewrite.
// It returns the bytes parsed from the file so the caller can decode them.
func Check(t testing.TB, path, want string) []byte {
	t.Helper()
	got := CheckText(t, path, want)
	data, err := Parse(got)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return data
}

// CheckText compares want with the text file at path, or writes it with
// -rewrite, and returns the file's contents.
func CheckText(t testing.TB, path, want string) string {
	t.Helper()
	if *Rewrite {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -rewrite to create it)", err)
	}
	got := string(b)
	if got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		i := 0
		for i < len(gl) && i < len(wl) && gl[i] == wl[i] {
			i++
		}
		line := func(ls []string) string {
			if i < len(ls) {
				return ls[i]
			}
			return "(end of file)"
		}
		t.Errorf("%s does not match the code; first difference at line %d:\n file: %s\n code: %s\n(run go test -rewrite if the change is intended and the spec says so)",
			path, i+1, line(gl), line(wl))
	}
	return got
}

// CheckDir fails for every *.hex file in dir that no vector produced, so a
// renamed or dropped vector does not leave a stale file behind. With
// -rewrite it removes them.
func CheckDir(t testing.TB, dir string, names []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".hex")
		if slices.Contains(names, name) {
			continue
		}
		if *Rewrite {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s: no test vector writes this file (run go test -rewrite to remove it)", f)
	}
}

// HeaderFields annotates the fixed 56-byte frame header. It restates the
// layout of proto/SPEC.md independently of the encoder.
func HeaderFields() Fields {
	return Fields{
		{4, `magic "CORR" (u32 LE 0x52524f43)`},
		{4, "header CRC32C of bytes 8..55 (u32 LE)"},
		{1, "proto id"},
		{1, "version"},
		{2, "opcode (u16 LE)"},
		{2, "flags (u16 LE)"},
		{1, "hops"},
		{1, "reserved, zero"},
		{8, "msg id (u64 LE)"},
		{8, "source node (u64 LE)"},
		{8, "target node (u64 LE)"},
		{4, "ext len (u32 LE)"},
		{4, "body len (u32 LE)"},
		{4, "payload CRC32C of ext and body (u32 LE)"},
		{4, "reserved, zero"},
	}
}

// TLVFields annotates an extension area, reading the entries itself. It
// stops at the first entry that does not fit and leaves the rest unnamed.
func TLVFields(ext []byte) Fields {
	var fs Fields
	for off := 0; off+4 <= len(ext); {
		typ := binary.LittleEndian.Uint16(ext[off:])
		n := int(binary.LittleEndian.Uint16(ext[off+2:]))
		crit := ""
		if typ&0x8000 != 0 {
			crit = ", critical"
		}
		fs.Add(4, "ext: type %#04x%s, length %d", typ, crit, n)
		off += 4
		if n > len(ext)-off {
			break
		}
		fs.Add(n, "ext: value")
		off += n
	}
	return fs
}

// FrameFields annotates a whole frame: header, extension area and body.
// The extension and body lengths come from the header bytes in frame when
// it holds them, so a vector whose lengths lie is annotated as it reads.
func FrameFields(frame []byte, body Fields) Fields {
	fs := HeaderFields()
	if len(frame) < 56 {
		return fs
	}
	extLen := int(binary.LittleEndian.Uint32(frame[40:]))
	bodyLen := int(binary.LittleEndian.Uint32(frame[44:]))
	if extLen <= len(frame)-56 {
		fs = append(fs, TLVFields(frame[56:56+extLen])...)
		if got := fs.Size() - 56; got < extLen {
			fs.Add(extLen-got, "ext: malformed entry")
		}
	} else if extLen > 0 {
		fs.Add(extLen, "extension area")
	}
	if body == nil && bodyLen > 0 {
		body = Fields{{bodyLen, "body"}}
	}
	return append(fs, body...)
}

// Walker builds the field list of a message by walking its bytes the way
// a decoder would, following length and count fields even when they are
// out of range, so malformed vectors are annotated as they read.
type Walker struct {
	b      []byte
	off    int
	Fields Fields
}

// NewWalker returns a Walker over b.
func NewWalker(b []byte) *Walker { return &Walker{b: b} }

// Done reports whether the walk reached the end of the data.
func (w *Walker) Done() bool { return w.off >= len(w.b) }

// Fixed adds a field of n bytes.
func (w *Walker) Fixed(n int, format string, args ...any) {
	w.Fields.Add(n, format, args...)
	w.off += n
}

func (w *Walker) uint(n int, name string) uint64 {
	var v uint64
	if w.off+n <= len(w.b) {
		for i := n - 1; i >= 0; i-- {
			v = v<<8 | uint64(w.b[w.off+i])
		}
	}
	w.Fixed(n, "%s", name)
	return v
}

// U8 adds a one-byte field and returns its value (0 past the end).
func (w *Walker) U8(name string) int { return int(w.uint(1, name)) }

// U16 adds a little-endian u16 field and returns its value.
func (w *Walker) U16(name string) int { return int(w.uint(2, name+" (u16 LE)")) }

// U32 adds a little-endian u32 field and returns its value.
func (w *Walker) U32(name string) uint64 { return w.uint(4, name+" (u32 LE)") }

// U64 adds a little-endian u64 field.
func (w *Walker) U64(name string) { w.uint(8, name+" (u64 LE)") }

// String16 adds a u16 length field and the text it announces.
func (w *Walker) String16(name string) {
	n := w.U16(name + " length")
	w.Fixed(n, "%s", name)
}
