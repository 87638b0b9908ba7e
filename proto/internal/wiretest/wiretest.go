package wiretest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/golden"
)

// Vector is one golden file: bytes produced by an encoder (possibly
// damaged on purpose), what they are, and what decoding them must give.
type Vector struct {
	Name   string        // file name under testdata/, without .hex
	About  []string      // comment lines: what the bytes are
	Data   []byte        // the bytes the encoder produced
	Fields golden.Fields // annotation of Data
	// Decode runs the receiving side's full decoding path over the bytes
	// read back from the file. For a valid vector it also compares the
	// decoded value with the one encoded and returns a plain error if they
	// differ.
	Decode func([]byte) error
	Want   proto.Code // CodeNone: must decode
	Detail string     // for an error: a substring of its message
}

// Expectation is the "expect:" comment line of v.
func (v *Vector) Expectation() string {
	if v.Want == proto.CodeNone {
		return "expect: ok"
	}
	return fmt.Sprintf("expect: error code %d (%s), message contains %q", v.Want, v.Want, v.Detail)
}

// Run checks every vector against its file in dir (or writes the files
// with -rewrite), decodes the file's bytes and checks the outcome, then
// fails for files in dir that no vector wrote.
func Run(t *testing.T, dir string, vs []Vector) {
	t.Helper()
	names := make([]string, 0, len(vs))
	for i := range vs {
		v := &vs[i]
		names = append(names, v.Name)
		t.Run(v.Name, func(t *testing.T) {
			comment := append(append([]string{}, v.About...), v.Expectation())
			data := golden.Check(t, filepath.Join(dir, v.Name+".hex"), golden.Format(comment, v.Data, v.Fields))
			err := v.Decode(data)
			if v.Want == proto.CodeNone {
				if err != nil {
					t.Fatalf("decoding the file: %v", err)
				}
				return
			}
			Expect(t, err, v.Want, v.Detail)
		})
	}
	golden.CheckDir(t, dir, names)
}

var sentinels = map[proto.Code]error{
	proto.CodeSync:        proto.ErrSync,
	proto.CodeEOF:         proto.ErrEOF,
	proto.CodeSock:        proto.ErrSock,
	proto.CodeField:       proto.ErrField,
	proto.CodeHeaderCRC:   proto.ErrHeaderCRC,
	proto.CodePayloadCRC:  proto.ErrPayloadCRC,
	proto.CodeState:       proto.ErrState,
	proto.CodeNoPeer:      proto.ErrNoPeer,
	proto.CodeNoRemoteKey: proto.ErrNoRemoteKey,
	proto.CodeNoLocalKey:  proto.ErrNoLocalKey,
	proto.CodeKeyExchange: proto.ErrKeyExchange,
	proto.CodeKeyFormat:   proto.ErrKeyFormat,
	proto.CodeBadRandom:   proto.ErrBadRandom,
	proto.CodeTooLarge:    proto.ErrTooLarge,
	proto.CodeOpcode:      proto.ErrOpcode,
	proto.CodeVersion:     proto.ErrVersion,
	proto.CodeTimeout:     proto.ErrTimeout,
	proto.CodeCluster:     proto.ErrCluster,
	proto.CodeShutdown:    proto.ErrShutdown,
	proto.CodeDup:         proto.ErrDup,
	proto.CodeBehind:      proto.ErrBehind,
	proto.CodeClusterID:   proto.ErrClusterID,
	proto.CodeDupNode:     proto.ErrDupNode,
	proto.CodeTryAgain:    proto.ErrTryAgain,
	proto.CodeNoMember:    proto.ErrNoMember,
	proto.CodeLinkFail:    proto.ErrLinkFail,
	proto.CodeNoRoute:     proto.ErrNoRoute,
	proto.CodeHopLimit:    proto.ErrHopLimit,
	proto.CodeBusy:        proto.ErrBusy,
}

// Sentinel returns the proto.ErrX sentinel for code, or nil.
func Sentinel(code proto.Code) error { return sentinels[code] }

// Typed fails t unless err is nil or a *proto.Error.
func Typed(t testing.TB, err error) {
	t.Helper()
	var pe *proto.Error
	if err != nil && !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *proto.Error", err, err)
	}
}

// Expect fails t unless err is a *proto.Error with the given code whose
// message contains detail, and errors.Is matches the code's sentinel and
// no other.
func Expect(t testing.TB, err error, code proto.Code, detail string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want code %d (%s) containing %q", code, code, detail)
	}
	var pe *proto.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *proto.Error", err, err)
	}
	if pe.Code != code {
		t.Fatalf("error %q has code %d (%s), want %d (%s)", err, pe.Code, pe.Code, code, code)
	}
	if !strings.Contains(err.Error(), detail) {
		t.Fatalf("error %q does not contain %q", err, detail)
	}
	for c, s := range sentinels {
		if got := errors.Is(err, s); got != (c == code) {
			t.Fatalf("errors.Is(%q, sentinel of code %d) = %v", err, c, got)
		}
	}
}

// Reseal recomputes the header CRC of a frame whose header bytes a test
// changed, so that the decoder gets past the CRC to the field under test.
func Reseal(frame []byte) []byte {
	binary.LittleEndian.PutUint32(frame[4:], proto.CRC32C(frame[8:proto.HeaderSize]))
	return frame
}

// Frame encodes f.
func Frame(f proto.Frame) []byte { return proto.AppendFrame(nil, &f) }

// Annotated returns the frame annotation with the body described by
// bodyFields, which is given the body bytes (or nil for an opaque body).
func Annotated(frame []byte, bodyFields func([]byte) golden.Fields) golden.Fields {
	var body golden.Fields
	if bodyFields != nil && len(frame) >= proto.HeaderSize {
		ext := int(binary.LittleEndian.Uint32(frame[40:]))
		if n := proto.HeaderSize + ext; n <= len(frame) {
			bl := int(binary.LittleEndian.Uint32(frame[44:]))
			b := frame[n:min(len(frame), n+bl)]
			body = bodyFields(b)
			if len(b) < bl && body.Size() < bl {
				body.Add(bl-body.Size(), "body (missing)")
			}
		}
	}
	return golden.FrameFields(frame, body)
}

func ranges(w *golden.Walker, n int, who string) {
	for i := 0; i < n && !w.Done(); i++ {
		w.Fixed(4, "%srange[%d]: proto id, min, max, reserved zero", who, i)
	}
}

// HelloFields annotates a HELLO body.
func HelloFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.Fixed(4, `hello magic "CHLO" (u32 LE 0x4f4c4843)`)
	w.U8("reason")
	n := w.U8("range count")
	w.Fixed(2, "reserved, zero")
	w.U64("node id")
	w.U64("features")
	ranges(w, n, "")
	w.String16("cluster name")
	w.String16("node name")
	w.String16("auth") // the MAC covers every byte before this length
	return w.Fields
}

// RejectFields annotates a REJECT body.
func RejectFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U16("error code")
	nl := w.U8("local range count")
	nr := w.U8("remote range count")
	ranges(w, nl, "local ")
	ranges(w, nr, "remote ")
	w.String16("text")
	return w.Fields
}

// StatusFields annotates a Status body (GOODBYE, ABORT replies).
func StatusFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U16("error code")
	w.String16("text")
	return w.Fields
}

// PingFields annotates a PING or PONG body.
func PingFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.Fixed(8, "sent: unix nanoseconds (i64 LE)")
	return w.Fields
}

// Equal is reflect.DeepEqual that treats a nil slice and an empty one as
// equal: decoders return empty slices that alias their input where the
// encoder was given nil.
func Equal(a, b any) bool {
	return reflect.DeepEqual(normalize(reflect.ValueOf(a)), normalize(reflect.ValueOf(b)))
}

func normalize(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	switch v.Kind() {
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Bytes()
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = normalize(v.Index(i))
		}
		return out
	case reflect.Struct:
		out := make([]any, v.NumField())
		for i := range out {
			out[i] = normalize(v.Field(i))
		}
		return out
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return normalize(v.Elem())
	}
	if v.CanInterface() {
		return v.Interface()
	}
	return fmt.Sprint(v)
}

// CheckOpTable compares the opcode table of ops with testdata/opcodes.txt
// (or writes it with -rewrite): renumbering, renaming or dropping an
// opcode, or changing the versions spoken, fails until the file and the
// spec are updated with it.
func CheckOpTable(t *testing.T, ops *proto.OpSet, comment ...string) {
	t.Helper()
	var sb strings.Builder
	for _, c := range comment {
		sb.WriteString(strings.TrimRight("# "+c, " ") + "\n")
	}
	fmt.Fprintf(&sb, "proto %d (%s) versions %d..%d\n", ops.Proto(), ops.Proto(), ops.Range().Min, ops.Range().Max)
	for _, op := range ops.Opcodes() {
		o, _ := ops.Lookup(op)
		fmt.Fprintf(&sb, "%#04x %-10s since %d\n", op, o.Name, o.Since)
	}
	golden.CheckText(t, filepath.Join("testdata", "opcodes.txt"), sb.String())
}
