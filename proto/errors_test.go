package proto_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// TestCodeValues pins the error codes: they travel in REJECT, GOODBYE and
// ABORT bodies, so their numbers are part of the wire format.
func TestCodeValues(t *testing.T) {
	for code, want := range map[proto.Code]uint16{
		proto.CodeNone: 0, proto.CodeSync: 1, proto.CodeEOF: 2, proto.CodeSock: 3, proto.CodeField: 4,
		proto.CodeHeaderCRC: 5, proto.CodeExtCRC: 6, proto.CodePayloadCRC: 7, proto.CodeState: 8,
		proto.CodeNoPeer: 9, proto.CodeNoRemoteKey: 10, proto.CodeNoLocalKey: 11, proto.CodeKeyExchange: 12,
		proto.CodeKeyFormat: 13, proto.CodeBadRandom: 14,
		proto.CodeTooLarge: 32, proto.CodeOpcode: 33, proto.CodeVersion: 34, proto.CodeTimeout: 35,
		proto.CodeCluster: 36, proto.CodeShutdown: 37, proto.CodeDup: 38, proto.CodeBehind: 39,
		proto.CodeClusterID: 40, proto.CodeDupNode: 41, proto.CodeTryAgain: 42, proto.CodeNoMember: 43,
		proto.CodeLinkFail: 44, proto.CodeNoRoute: 45, proto.CodeHopLimit: 46, proto.CodeBusy: 47,
	} {
		if uint16(code) != want {
			t.Errorf("%s = %d, the spec says %d", code, code, want)
		}
		if code.String() == fmt.Sprintf("code %d", want) {
			t.Errorf("code %d has no name", want)
		}
	}
	if got := proto.Code(99).String(); got != "code 99" {
		t.Errorf("Code(99) = %q", got)
	}
}

func TestErrorsIs(t *testing.T) {
	for code := proto.Code(1); code < 64; code++ {
		s := wiretest.Sentinel(code)
		if s == nil {
			continue
		}
		err := proto.Errorf(code, "detail %d", code)
		wiretest.Expect(t, err, code, "detail")
		wrapped := fmt.Errorf("link to node 7: %w", err)
		if !errors.Is(wrapped, s) {
			t.Errorf("errors.Is(wrapped %s error, its sentinel) = false", code)
		}
		if errors.Is(s, err) {
			t.Errorf("a sentinel matches a detailed error of code %s; only the reverse should hold", code)
		}
	}
	// An Error carries its cause.
	err := &proto.Error{Code: proto.CodeSock, Detail: "reading", Err: io.ErrUnexpectedEOF}
	if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, proto.ErrSock) || errors.Is(err, proto.ErrEOF) {
		t.Fatalf("errors.Is on %q with a cause", err)
	}
	if got, want := err.Error(), "socket error: reading: unexpected EOF"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got := proto.ErrTooLarge.Error(); got != "too large" {
		t.Fatalf("sentinel text %q", got)
	}
}
