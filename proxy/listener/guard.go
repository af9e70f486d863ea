package listener

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"time"
)

// writeTimeout makes every write to an HTTP client fail once it has blocked
// for the listener's responseWriteTimeout: a client that stops reading is
// disconnected instead of holding a goroutine and buffers forever. It lives
// on the accepted socket, under TLS, so HTTP/1, HTTP/2 and upgraded
// connections are all covered.
type writeTimeout struct {
	d     atomic.Int64 // ns; 0: off (opaque TCP has its own idle timeout)
	armed atomic.Int64 // unix ns when the deadline was last pushed out
}

func (w *writeTimeout) before(c net.Conn) {
	d := w.d.Load()
	if d <= 0 {
		return
	}
	// Push the deadline out only every d/8, so a busy connection costs no
	// timer update per write; a blocked write still fails within d.
	now := time.Now().UnixNano()
	if now-w.armed.Load() > d/8 {
		c.SetWriteDeadline(time.Unix(0, now+d))
		w.armed.Store(now)
	}
}

// framingConn watches the plaintext HTTP/1 bytes a client sends for a header
// block carrying both Content-Length and Transfer-Encoding. net/http then
// forwards the request safely as chunked (it drops Content-Length), but RFC
// 9112 §6.1 also asks that the connection be closed after the response,
// since the client and a peer before the proxy may disagree on where the
// next request starts. net/http does not say the request had both, so the
// raw bytes are watched. It only matches field names at line starts and
// resets at blank lines; a body that happens to look like such a header
// block only costs the client a new connection.
type framingConn struct {
	net.Conn
	lineStart bool // the next byte starts a line
	pending   [len("transfer-encoding")]byte
	np        int
	seenCL    bool
	seenTE    bool
	suspect   atomic.Bool
}

func newFramingConn(c net.Conn) *framingConn { return &framingConn{Conn: c, lineStart: true} }

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.scan(p[:n])
	return n, err
}

const (
	nameCL = "content-length"
	nameTE = "transfer-encoding"
)

func (c *framingConn) scan(b []byte) {
	for len(b) > 0 {
		if c.lineStart {
			for len(b) > 0 && c.lineStart {
				c.lineByte(b[0])
				b = b[1:]
			}
			continue
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return
		}
		b = b[i+1:]
		c.lineStart, c.np = true, 0
	}
}

// lineByte looks at one byte at the start of a line.
func (c *framingConn) lineByte(x byte) {
	if c.np == 0 {
		switch x {
		case 'c', 'C', 't', 'T', '\r', '\n':
		default: // most lines: no name of interest starts this way
			c.lineStart = false
			return
		}
	}
	if x == '\n' && (c.np == 0 || (c.np == 1 && c.pending[0] == '\r')) {
		// A blank line ends a header block.
		if c.seenCL && c.seenTE {
			c.suspect.Store(true)
		}
		c.seenCL, c.seenTE, c.np = false, false, 0
		return // still at a line start
	}
	if x >= 'A' && x <= 'Z' {
		x += 'a' - 'A'
	}
	if c.np < len(c.pending) {
		c.pending[c.np] = x
		c.np++
	}
	p := string(c.pending[:c.np]) // no allocation: compared, not kept
	switch {
	case p == "\r":
		return
	case p == nameCL:
		c.seenCL = true
	case p == nameTE:
		c.seenTE = true
	case len(p) < len(nameTE) && (nameCL[:min(len(p), len(nameCL))] == p || nameTE[:len(p)] == p):
		return // still a prefix of one of the names
	}
	c.lineStart, c.np = false, 0
	if x == '\n' {
		c.lineStart = true
	}
}

type framingKey struct{}

// framingSuspect reports whether the request's connection sent a header
// block with both Content-Length and Transfer-Encoding.
func framingSuspect(ctx context.Context) bool {
	fc, _ := ctx.Value(framingKey{}).(*framingConn)
	return fc != nil && fc.suspect.Load()
}
