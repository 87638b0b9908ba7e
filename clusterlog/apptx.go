package clusterlog

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// AppTx is the application's key space inside one write transaction of the
// log file: a set of named buckets under the file's app bucket (FORMAT.md).
// The Applier gets one in Apply, Snapshot, Restore and CheckConfChange; it
// belongs to the transaction that also records the applied index, so
// whatever the application writes there becomes durable exactly when the
// entry counts as applied, and is rolled back with it.
//
// An AppTx and the buckets it returns are valid only during the call that
// received them. Values returned by Get and Scan are valid as long as the
// bucket is.
type AppTx struct {
	b *bolt.Bucket
}

// ErrBucketName is returned for an empty bucket name.
var ErrBucketName = errors.New("clusterlog: empty bucket name")

// Bucket returns the bucket name, creating it if it does not exist.
func (t *AppTx) Bucket(name []byte) (*AppBucket, error) {
	if len(name) == 0 {
		return nil, ErrBucketName
	}
	if b := t.b.Bucket(name); b != nil {
		return &AppBucket{b: b}, nil
	}
	b, err := t.b.CreateBucket(name)
	if err != nil {
		return nil, fmt.Errorf("clusterlog: create app bucket %q: %w", name, err)
	}
	return &AppBucket{b: b}, nil
}

// DeleteBucket deletes the bucket name and everything in it; a missing
// bucket is not an error.
func (t *AppTx) DeleteBucket(name []byte) error {
	if len(name) == 0 {
		return ErrBucketName
	}
	if err := t.b.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		return fmt.Errorf("clusterlog: delete app bucket %q: %w", name, err)
	}
	return nil
}

// AppBucket is one named bucket of an AppTx. Its method set is rsm.Tx's.
type AppBucket struct {
	b *bolt.Bucket
}

// Get returns the value of key, or nil.
func (b *AppBucket) Get(key []byte) []byte { return b.b.Get(key) }

// Put stores value under key. Both are copied, so the caller may reuse them.
func (b *AppBucket) Put(key, value []byte) error {
	if err := b.b.Put(bytes.Clone(key), bytes.Clone(value)); err != nil {
		return fmt.Errorf("clusterlog: app put: %w", err)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (b *AppBucket) Delete(key []byte) error {
	if err := b.b.Delete(key); err != nil {
		return fmt.Errorf("clusterlog: app delete: %w", err)
	}
	return nil
}

// Scan calls fn for every key with the prefix, in key order, and stops at
// the first error fn returns, which it returns. fn must not modify the
// bucket.
func (b *AppBucket) Scan(prefix []byte, fn func(k, v []byte) error) error {
	c := b.b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if v == nil && b.b.Bucket(k) != nil {
			continue // a nested bucket; not a value
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}
