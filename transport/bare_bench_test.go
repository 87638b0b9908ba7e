package transport

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
)

// BenchmarkBare is the ceiling for BenchmarkLink: bare streams on loopback
// with 64 KiB writes and no framing, TLS 1.3 and TCP in the same run.
func BenchmarkBare(b *testing.B) {
	for _, mode := range []string{"tls", "tcp"} {
		b.Run(mode, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			cert, err := processCert()
			if err != nil {
				b.Fatal(err)
			}
			tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}
			const size = 64 << 10
			read := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					read <- 0
					return
				}
				var r io.Reader = c
				if mode == "tls" {
					r = tls.Server(c, tc)
				}
				n, _ := io.CopyBuffer(io.Discard, r, make([]byte, size))
				read <- n
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			var w io.WriteCloser = c
			if mode == "tls" {
				w = tls.Client(c, tc)
			}
			buf := make([]byte, size)
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := w.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			w.Close()
			if n := <-read; n != int64(b.N)*size {
				b.Fatalf("read %d of %d bytes", n, int64(b.N)*size)
			}
		})
	}
}
