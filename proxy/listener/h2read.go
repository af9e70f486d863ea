package listener

import (
	"net"
)

// h2cPreface is what an HTTP/2 prior-knowledge (h2c) client sends first (RFC 9113 §3.4).
const h2cPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// h2ReadBufferSize holds a burst of small frames (a gRPC call's HEADERS, DATA, WINDOW_UPDATE,
// PING) for one read system call.
const h2ReadBufferSize = 16 << 10

type h2ReadMode uint8

const (
	h2Undecided   h2ReadMode = iota // watching the first bytes for the h2c preface
	h2PassThrough                   // HTTP/1: net/http reads through its own buffer
	h2Buffered
)

// h2ReadConn buffers what net/http's HTTP/2 server reads from a plaintext (h2c) client. The
// server reads every frame as a 9-byte header and then its payload straight from the
// connection, two read system calls per frame (under TLS the record layer buffers; plaintext
// has nothing in between). Through this buffer a burst of frames costs one. A connection that
// does not start with the h2c preface is HTTP/1, which net/http reads through its own buffer:
// it passes straight through.
//
// Only one goroutine reads at a time (net/http's connection reader, or the HTTP/2 server's
// frame reader), as for any net.Conn net/http serves.
type h2ReadConn struct {
	net.Conn
	mode    h2ReadMode
	matched int // bytes of the preface seen so far (undecided)
	buf     []byte
	r, w    int   // unread bytes are buf[r:w]
	err     error // the read error that came with the last buffered bytes
}

// watchH2 buffers c's reads once its first bytes turn out to be the h2c preface.
func watchH2(c net.Conn) *h2ReadConn { return &h2ReadConn{Conn: c} }

// bufferH2 buffers the reads of c, a connection detected as h2c.
func bufferH2(c net.Conn) *h2ReadConn {
	return &h2ReadConn{Conn: c, mode: h2Buffered, buf: make([]byte, h2ReadBufferSize)}
}

func (c *h2ReadConn) Read(p []byte) (int, error) {
	switch c.mode {
	case h2PassThrough:
		return c.Conn.Read(p)
	case h2Undecided:
		n, err := c.Conn.Read(p)
		c.watch(p[:n])
		return n, err
	}
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if c.err != nil {
		err := c.err
		c.err = nil // a deadline's timeout is not final: the next read tries again
		return 0, err
	}
	if len(p) >= len(c.buf) {
		return c.Conn.Read(p) // a large frame payload: no copy
	}
	n, err := c.Conn.Read(c.buf)
	m := copy(p, c.buf[:n])
	c.r, c.w = m, n
	if err != nil && m < n {
		c.err = err // after the buffered bytes
		return m, nil
	}
	return m, err
}

// watch compares the first bytes read with the h2c preface and decides the mode.
func (c *h2ReadConn) watch(b []byte) {
	for _, x := range b {
		if x != h2cPreface[c.matched] {
			c.mode = h2PassThrough
			return
		}
		c.matched++
		if c.matched == len(h2cPreface) {
			c.mode, c.buf = h2Buffered, make([]byte, h2ReadBufferSize)
			return
		}
	}
}

// CloseWrite keeps half-close working through the wrapper.
func (c *h2ReadConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
