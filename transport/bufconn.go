package transport

import (
	"bufio"
	"net"
	"sync"
)

// bufConn sits under a TLS connection and turns the one write per 16 KiB
// record that crypto/tls issues into one write per batch: while the link's
// writer has a batch open, record writes are gathered and leave together
// at flush. Reads go through a large buffer for the same reason. Nothing
// here touches the bytes; TLS still encrypts and frames every record.
type bufConn struct {
	net.Conn
	r *bufio.Reader

	mu   sync.Mutex // guards the fields below
	hold bool       // a batch is open: gather writes
	buf  []byte
}

const bufConnSize = 256 << 10

// gatherTLSRecords turns bufConn on; benchmarks turn it off to compare.
var gatherTLSRecords = true

func newBufConn(c net.Conn) *bufConn {
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, bufConnSize)}
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.hold {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= bufConnSize {
		// Keep the pipe busy instead of holding a whole batch back.
		return len(p), c.writeLocked()
	}
	return len(p), nil
}

// batch opens a batch; flush writes what it gathered and closes it.
func (c *bufConn) batch() {
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
}

func (c *bufConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = false
	return c.writeLocked()
}

func (c *bufConn) writeLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}
