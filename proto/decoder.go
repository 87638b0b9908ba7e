package proto

// State is a state of the receive state machine.
type State uint8

// Receive states, after the HAMMER2 ioq: waiting for a header, waiting for
// the payload of a checked header, or failed for good.
const (
	StateHeader State = iota
	StatePayload
	StateError
)

func (s State) String() string {
	switch s {
	case StateHeader:
		return "header"
	case StatePayload:
		return "payload"
	case StateError:
		return "error"
	}
	return "state?"
}

const minDecoderBuf = 64 << 10

// Decoder is the receive state machine of a link. It does no I/O: the
// caller writes received bytes into Buffer (or Feed), reports them with
// Advance, then calls Next until it returns no frame. Errors are sticky:
// once Next fails the decoder stays in StateError and the connection must be
// closed, because a byte stream cannot be resynchronized safely.
//
// The zero value is not usable; call NewDecoder.
type Decoder struct {
	max   int
	state State
	hdr   Header
	err   error
	buf   []byte // buf[r:w] is received and not yet consumed
	r, w  int
}

// NewDecoder returns a decoder that refuses payloads larger than maxPayload
// (DefaultMaxPayload if maxPayload <= 0).
func NewDecoder(maxPayload int) *Decoder {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	return &Decoder{max: maxPayload, buf: make([]byte, minDecoderBuf)}
}

// SetMaxPayload changes the payload limit for frames whose header has not
// been read yet. A link raises it after the handshake, so that a peer not
// yet authenticated can make it allocate at most a small buffer.
func (d *Decoder) SetMaxPayload(n int) {
	if n <= 0 {
		n = DefaultMaxPayload
	}
	d.max = n
}

// State reports the current receive state.
func (d *Decoder) State() State { return d.state }

// Err returns the error that put the decoder in StateError, if any.
func (d *Decoder) Err() error { return d.err }

// Buffered reports how many received bytes are not yet consumed.
func (d *Decoder) Buffered() int { return d.w - d.r }

// Buffer returns free space to read into: at least 1 byte, and in
// StatePayload enough for the rest of the current frame. Only bytes
// reported with Advance are used. Frames returned by Next become invalid.
func (d *Decoder) Buffer() []byte {
	need := 1
	if d.state == StatePayload {
		// At least 1: the caller may already have written past the end of
		// the current frame, and Feed loops until Buffer has room.
		need = max(1, HeaderSize+d.hdr.PayloadLen()-d.Buffered())
	}
	d.reserve(need)
	return d.buf[d.w:]
}

// reserve makes room for n more bytes, compacting before it grows. The
// payload size was checked against the limit before a frame's room is
// reserved, so growth for a frame is bounded by HeaderSize + max; beyond
// that the buffer only holds what the caller fed without calling Next.
func (d *Decoder) reserve(n int) {
	if len(d.buf)-d.w >= n && (d.r == 0 || len(d.buf)-d.w >= minDecoderBuf/4) {
		return
	}
	live := d.w - d.r
	if live+n <= len(d.buf) {
		copy(d.buf, d.buf[d.r:d.w])
	} else {
		// Double for amortized growth, but no further than needed: a
		// frame of the maximum size costs HeaderSize+max bytes, not twice.
		size := max(len(d.buf)*2, live+n)
		nb := make([]byte, size)
		copy(nb, d.buf[d.r:d.w])
		d.buf = nb
	}
	d.r, d.w = 0, live
}

// Advance reports that n bytes were written into the slice Buffer returned.
func (d *Decoder) Advance(n int) {
	if n < 0 || d.w+n > len(d.buf) {
		panic("proto: Decoder.Advance beyond the buffer")
	}
	d.w += n
}

// Feed copies p into the decoder; it is Buffer and Advance for callers that
// already hold the bytes.
func (d *Decoder) Feed(p []byte) {
	for len(p) > 0 {
		n := copy(d.Buffer(), p)
		d.Advance(n)
		p = p[n:]
	}
}

// Next returns the next complete frame. It returns ok=false with a nil
// error when more input is needed. The frame's Ext and Body alias the
// decoder's buffer and stay valid until the next call to Next, Buffer or
// Feed; copy them to keep them.
func (d *Decoder) Next() (f Frame, ok bool, err error) {
	for {
		switch d.state {
		case StateError:
			return Frame{}, false, d.err
		case StateHeader:
			if d.Buffered() < HeaderSize {
				return Frame{}, false, nil
			}
			h, err := ParseHeader(d.buf[d.r:d.w], d.max)
			if err != nil {
				return Frame{}, false, d.fail(err)
			}
			d.hdr, d.state = h, StatePayload
		case StatePayload:
			end := HeaderSize + d.hdr.PayloadLen()
			if d.Buffered() < end {
				return Frame{}, false, nil
			}
			f, err := CheckPayload(d.hdr, d.buf[d.r+HeaderSize:d.r+end])
			if err != nil {
				return Frame{}, false, d.fail(err)
			}
			d.r += end
			if d.r == d.w {
				d.r, d.w = 0, 0
			}
			d.state = StateHeader
			return f, true, nil
		}
	}
}

// Close tells the decoder the stream ended. It returns ErrEOF if a frame
// was cut off, nil on a clean end between frames.
func (d *Decoder) Close() error {
	if d.state == StateError {
		return d.err
	}
	if d.state == StatePayload || d.Buffered() > 0 {
		return d.fail(Errorf(CodeEOF, "stream ended inside a frame (%s, %d bytes buffered)", d.state, d.Buffered()))
	}
	return nil
}

func (d *Decoder) fail(err error) error {
	d.state, d.err = StateError, err
	return err
}
