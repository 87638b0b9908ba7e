package transport

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/corralhq/corral/proto"
)

// KeySize is the size of a cluster key.
const KeySize = 32

const keyPrefix = "corral-cluster-key-v1:"

// GenerateKey returns a new random cluster key.
func GenerateKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, &proto.Error{Code: proto.CodeBadRandom, Detail: "reading the system random source", Err: err}
	}
	return k, nil
}

// EncodeKey returns the text form of a key file: one line,
// "corral-cluster-key-v1:" followed by the key in base64.
func EncodeKey(k []byte) []byte {
	return []byte(keyPrefix + base64.StdEncoding.EncodeToString(k) + "\n")
}

// ParseKey decodes the text form of a key file.
func ParseKey(b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	rest, ok := strings.CutPrefix(s, keyPrefix)
	if !ok {
		return nil, proto.Errorf(proto.CodeKeyFormat, "key file does not start with %q", keyPrefix)
	}
	k, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, &proto.Error{Code: proto.CodeKeyFormat, Detail: "key is not base64", Err: err}
	}
	if len(k) != KeySize {
		return nil, proto.Errorf(proto.CodeKeyFormat, "key is %d bytes, want %d", len(k), KeySize)
	}
	return k, nil
}

// WriteKeyFile writes a new key to path with mode 0600. It refuses to
// overwrite an existing file, so a key in use is never lost by accident.
func WriteKeyFile(path string, k []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write cluster key: %w", err)
	}
	if _, err := f.Write(EncodeKey(k)); err != nil {
		f.Close()
		return fmt.Errorf("write cluster key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write cluster key %s: %w", path, err)
	}
	return f.Close()
}

// ReadKeyFile loads a cluster key. A missing file is CodeNoLocalKey, a
// malformed one CodeKeyFormat.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &proto.Error{Code: proto.CodeNoLocalKey, Detail: "reading " + path, Err: err}
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("cluster key file %s: %w", path, err)
	}
	return k, nil
}
