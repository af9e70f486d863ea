// Package detect sniffs the first bytes of a connection to tell HTTP/1,
// HTTP/2 prior knowledge (h2c), TLS and opaque TCP apart.
package detect

import (
	"bytes"
	"errors"
	"net"
	"os"
	"time"
)

// Protocol is what a connection's first bytes look like.
type Protocol uint8

const (
	Unknown Protocol = iota
	HTTP1
	HTTP2
	TLS
	Opaque
)

func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "http1"
	case HTTP2:
		return "http2"
	case TLS:
		return "tls"
	case Opaque:
		return "opaque"
	}
	return "unknown"
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113 §3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// methods that start an HTTP/1.x request line, each with its trailing space.
var methods = [][]byte{
	[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("DELETE "), []byte("HEAD "),
	[]byte("OPTIONS "), []byte("PATCH "), []byte("CONNECT "), []byte("TRACE "),
}

// MaxPeek is how many bytes Classify may ask for; enough for the h2 preface.
const MaxPeek = 24

// Classify decides from a prefix of the stream. It returns Unknown when the
// prefix is still ambiguous and more bytes are needed. Once it returns a
// definite answer, longer prefixes of the same stream give the same answer.
func Classify(b []byte) Protocol {
	if len(b) == 0 {
		return Unknown
	}
	// TLS record: handshake (0x16), version major 3.
	if b[0] == 0x16 {
		if len(b) < 2 {
			return Unknown
		}
		if b[1] == 0x03 {
			return TLS
		}
		return Opaque
	}
	if n := min(len(b), len(h2Preface)); bytes.Equal(b[:n], h2Preface[:n]) {
		if n == len(h2Preface) {
			return HTTP2
		}
		return Unknown // could still be h2 (or "PRI" something else)
	}
	ambiguous := false
	for _, m := range methods {
		n := min(len(b), len(m))
		if bytes.Equal(b[:n], m[:n]) {
			if n == len(m) {
				return HTTP1
			}
			ambiguous = true
		}
	}
	if ambiguous {
		return Unknown
	}
	return Opaque
}

// Conn replays the sniffed bytes before reading on from the socket.
type Conn struct {
	net.Conn
	peeked []byte
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Replay returns c with b read first: bytes a reader took from c and did not use.
func Replay(c net.Conn, b []byte) *Conn { return &Conn{Conn: c, peeked: b} }

// Peeked returns the bytes not yet replayed.
func (c *Conn) Peeked() []byte { return c.peeked }

// Sniff reads until Classify decides or timeout passes. A client that sends
// nothing within timeout (a server-speaks-first protocol) is Opaque. The
// returned Conn replays everything read, and has its deadline cleared.
func Sniff(c net.Conn, timeout time.Duration) (Protocol, *Conn, error) {
	buf := make([]byte, 0, MaxPeek)
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Unknown, nil, err
	}
	proto := Unknown
	for proto == Unknown && len(buf) < MaxPeek {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		proto = Classify(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				proto = Opaque // server-speaks-first, or a short opaque hello
				break
			}
			if proto == Unknown {
				return Unknown, nil, err
			}
			break
		}
	}
	if proto == Unknown {
		proto = Opaque
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return Unknown, nil, err
	}
	return proto, &Conn{Conn: c, peeked: buf}, nil
}

// CloseWrite half-closes the socket when it supports that, so an opaque
// stream can still finish in the other direction (the TCP proxy needs it).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
