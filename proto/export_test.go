package proto

// BufCap exposes the capacity of the decoder's buffer, so tests can check
// that a hostile header does not make it grow.
func (d *Decoder) BufCap() int { return cap(d.buf) }

// MinDecoderBuf is the initial buffer size of a decoder.
const MinDecoderBuf = minDecoderBuf
