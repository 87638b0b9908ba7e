package golden

import (
	"bytes"
	"strings"
	"testing"
)

func TestFormatParse(t *testing.T) {
	data := make([]byte, 40)
	for i := range data {
		data[i] = byte(i * 7)
	}
	fs := Fields{{4, "a"}, {0, "empty"}, {20, "b"}}
	text := Format([]string{"title", "expect: ok"}, data, fs)
	got, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("Parse(Format(x)) = %x, want %x\n%s", got, data, text)
	}
	for _, want := range []string{"# title\n", "0000: 00 07 0e 15", "# a\n", "#     empty: empty\n", "(not part of the message)"} {
		if !strings.Contains(text, want) {
			t.Errorf("Format output lacks %q:\n%s", want, text)
		}
	}
	short := Format(nil, data[:6], fs)
	if !strings.Contains(short, "b (truncated: 2 of 20 bytes)") {
		t.Errorf("truncated field not marked:\n%s", short)
	}
}

func TestParseRejectsBadOffsets(t *testing.T) {
	for _, text := range []string{
		"0000: 01 02\n0003: 03\n", // offset skips a byte
		"0000: 01 2\n",            // not a two-digit byte
		"01 02\n",                 // no offset
		"0000: 01 zz\n",           // not hex
	} {
		if _, err := Parse(text); err == nil {
			t.Errorf("Parse(%q) succeeded", text)
		}
	}
}
