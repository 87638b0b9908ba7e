package durable

import "os"

// SyncDir fsyncs directory dir, so that a file created, renamed or
// removed in it stays so across a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
