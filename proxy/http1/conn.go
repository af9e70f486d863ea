// Package http1 is the proxy's own server for plaintext HTTP/1.1 client
// connections, in place of net/http's for the common keep-alive request: the
// request head is parsed in place in a buffer reused for the connection's
// life, the response head and a small body leave in one write, and a request
// costs no goroutine, context or header clone of its own: the read that
// notices the client leaving starts only when a handler runs longer than
// watchDelay (a timer per connection, reset per request); deadlines are set
// on the connection.
//
// It serves a strict subset of HTTP/1.1 (see parseHead) and parses it to
// exactly what net/http would. At the first request outside that subset
// (chunked or Expect request bodies, upgrades, CONNECT, HTTP/1.0, the h2c
// preface, obs-fold, bare LF, heads over 4 KiB, anything malformed), Serve
// hands the connection back with the bytes it has read, and net/http serves
// the rest of it exactly as it would have served all of it, refusals
// included.
//
// ReadResponseHead reads upstream response heads the same way (in place, a
// strict subset, the rest left to http.ReadResponse) for proxy/upstream's
// HTTP/1.1 pool; both parsers share the field-line parsing (fields.go).
package http1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// bufSize is the read buffer, and the largest head the engine takes (net/http
// takes heads up to MaxHeaderBytes plus 4 KiB, so it takes all of these too).
const bufSize = 4 << 10

// Limits are the listener's limits that apply to the connection.
type Limits struct {
	ReadHeaderTimeout time.Duration // from the first byte of a request to the end of its head
	IdleTimeout       time.Duration // waiting for the next request; 0: none
}

const (
	stateIdle   int32 = iota // waiting for the first byte of a request
	stateActive              // reading or serving a request
	stateClosed              // closed by CloseIdle
)

// Conn is one client connection served by the engine.
type Conn struct {
	nc      net.Conn
	handler http.Handler
	limits  Limits
	closing func() bool  // the listener asks clients to leave (drain, reload)
	tmpl    http.Request // what every request starts from: carries the connection's context
	cancel  context.CancelFunc

	buf  []byte // unread bytes are buf[r:w]
	r, w int
	bw   *bufio.Writer
	head head
	resp response

	state atomic.Int32

	// The read that runs while a handler does, once the request is read and
	// the handler has run for watchDelay: it notices the client leaving (or
	// keeps the first byte of its next request).
	bgByte    [1]byte
	bgTimer   *time.Timer // runs backgroundRead after watchDelay; reset per request
	bgDone    chan struct{}
	bgMu      sync.Mutex
	bgArmed   bool // the timer may still start the read (under bgMu)
	bgRunning bool // the read started: bgDone will be sent (under bgMu)
	bgGot     bool
	bgErr     error
}

// watchDelay is how long a handler runs before the read that notices the
// client leaving starts. Most exchanges end sooner and so cost no read, no
// goroutine and no wake-up; a client leaving a longer one is noticed this
// much later.
const watchDelay = 20 * time.Millisecond

// NewConn prepares nc for Serve; requests' contexts derive from ctx. Once
// closing reports true, every response asks the client to leave
// (Connection: close) and the connection closes after it.
func NewConn(ctx context.Context, nc net.Conn, h http.Handler, lim Limits, closing func() bool) *Conn {
	c := &Conn{nc: nc, handler: h, limits: lim, closing: closing, buf: make([]byte, bufSize), bgDone: make(chan struct{}, 1)}
	ctx, c.cancel = context.WithCancel(ctx)
	c.tmpl = *(&http.Request{}).WithContext(ctx)
	c.tmpl.Proto, c.tmpl.ProtoMajor, c.tmpl.ProtoMinor = "HTTP/1.1", 1, 1
	c.tmpl.RemoteAddr = nc.RemoteAddr().String()
	c.bw = bufio.NewWriterSize(nc, bufSize)
	c.resp.c = c
	return c
}

// Serve serves requests until the connection ends (handedOff false; nc is
// closed) or a request is one the engine leaves to net/http: then it returns
// the bytes read and not served, which net/http must read before nc's.
func (c *Conn) Serve() (pending []byte, handedOff bool) {
	defer c.cancel()
	for {
		n, v := c.readHead()
		if v == take && !parseHead(c.buf[c.r:c.r+n], &c.head) {
			v = handOff
		}
		if v != take {
			if v == handOff {
				return append([]byte(nil), c.buf[c.r:c.w]...), true
			}
			c.nc.Close()
			return nil, false
		}
		c.r += n
		if !c.serve() {
			c.nc.Close()
			return nil, false
		}
	}
}

// CloseIdle closes the connection if it waits for a request (drain, retire)
// and reports whether it did.
func (c *Conn) CloseIdle() bool {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.nc.Close()
		return true
	}
	return false
}

// Close closes the connection whatever it is doing.
func (c *Conn) Close() { c.nc.Close() }

const closed verdict = 3

// readHead reads until buf[r:] starts with a complete head; it returns the
// head's length and take, or handOff, or closed (nothing buffered and the
// connection ended, timed out idle, or was closed by CloseIdle).
func (c *Conn) readHead() (int, verdict) {
	idle := c.r == c.w
	if idle {
		c.r, c.w = 0, 0
		c.state.Store(stateIdle)
		c.nc.SetReadDeadline(deadline(c.limits.IdleTimeout))
	} else {
		c.nc.SetReadDeadline(deadline(c.limits.ReadHeaderTimeout))
	}
	for {
		if c.w > c.r {
			if n := endOfHead(c.buf[c.r:c.w]); n != 0 {
				if n < 0 {
					return 0, handOff
				}
				return n, take
			}
			if c.w == len(c.buf) {
				if c.r == 0 {
					return 0, handOff // a head longer than the buffer
				}
				c.w = copy(c.buf, c.buf[c.r:c.w])
				c.r = 0
			}
		}
		n, err := c.nc.Read(c.buf[c.w:])
		if n > 0 && idle {
			idle = false
			if !c.state.CompareAndSwap(stateIdle, stateActive) {
				return 0, closed
			}
			if endOfHead(c.buf[c.w:c.w+n]) == 0 { // more to wait for: the header timeout runs
				c.nc.SetReadDeadline(deadline(c.limits.ReadHeaderTimeout))
			}
		}
		c.w += n
		if err != nil {
			if c.w > c.r && !isTimeout(err) && c.state.Load() != stateClosed {
				return 0, handOff // net/http reads these bytes, meets the same end and answers as it does
			}
			return 0, closed // a head not complete in time is closed without a reply, as net/http does
		}
	}
}

func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// serve runs the handler for the parsed head and writes the response; false:
// the connection must close.
func (c *Conn) serve() bool {
	h := &c.head
	ru := new(requestWithURL) // one allocation for both
	ru.req, ru.url = c.tmpl, h.url
	req := &ru.req
	req.Method, req.URL, req.RequestURI = h.method, &ru.url, h.target
	req.Header, req.Host, req.Close = h.header, h.host, h.close
	req.ContentLength = h.contentLength
	var b *body
	if h.contentLength > 0 {
		b = &body{c: c, left: h.contentLength}
		req.Body = b
	} else {
		req.Body = http.NoBody
	}
	c.nc.SetReadDeadline(time.Time{}) // body reads are bounded by the body idle timeout's own deadline
	if b == nil && c.r == c.w {
		c.startBackgroundRead()
	}
	c.resp.reset(req, b)
	if !c.runHandler(req) {
		if c.resp.wroteHead {
			c.bw.Flush() // what was sent stays sent, cut short by the close (as net/http does)
		}
		c.closeBody(b)
		return false
	}
	keep := c.resp.finish()
	c.closeBody(b)
	if c.bgErr != nil {
		return false
	}
	return keep
}

// requestWithURL is a request and its URL.
type requestWithURL struct {
	req http.Request
	url url.URL
}

// runHandler calls the handler; a panic (http.ErrAbortHandler: a response cut
// short on purpose) leaves the response unfinished and closes the connection.
func (c *Conn) runHandler(req *http.Request) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	c.handler.ServeHTTP(&c.resp, req)
	return true
}

// closeBody ends the request: its body reads fail from now on, and the
// background read stops, keeping a byte it read for the next request.
func (c *Conn) closeBody(b *body) {
	if b != nil {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
	}
	c.bgMu.Lock()
	if c.bgArmed {
		c.bgArmed = false
		c.bgMu.Unlock()
		c.bgTimer.Stop() // if it already fired, backgroundRead finds it disarmed
		return
	}
	running := c.bgRunning
	c.bgRunning = false
	c.bgMu.Unlock()
	if !running {
		return
	}
	c.nc.SetReadDeadline(aLongTimeAgo)
	<-c.bgDone
	if c.bgGot {
		c.bgGot = false
		c.buf[0] = c.bgByte[0]
		c.r, c.w = 0, 1
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// startBackgroundRead arms the timer that starts backgroundRead.
func (c *Conn) startBackgroundRead() {
	c.bgMu.Lock()
	c.bgArmed = true
	c.bgMu.Unlock()
	if c.bgTimer == nil {
		c.bgTimer = time.AfterFunc(watchDelay, c.backgroundRead)
	} else {
		c.bgTimer.Reset(watchDelay)
	}
}

// backgroundRead waits for the client's next byte: EOF or an error means
// the client left, and the request's context ends (the socket also tells the
// exchange running for it); a deadline set by closeBody just stops it.
func (c *Conn) backgroundRead() {
	c.bgMu.Lock()
	if !c.bgArmed { // the request ended first (a late firing of an earlier arming)
		c.bgMu.Unlock()
		return
	}
	c.bgArmed, c.bgRunning = false, true
	c.bgMu.Unlock()
	n, err := c.nc.Read(c.bgByte[:])
	c.bgGot = n == 1
	if err != nil && !isTimeout(err) {
		c.bgErr = err
		c.cancel()
	}
	c.bgDone <- struct{}{}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// body is a request body of known length, read from the connection's buffer
// and then the socket.
type body struct {
	mu     sync.Mutex
	c      *Conn
	left   int64
	closed bool
	err    error // a read error other than EOF: the connection cannot go on
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	c := b.c
	var n int
	var err error
	if c.r < c.w {
		n = copy(p, c.buf[c.r:c.w])
		c.r += n
	} else {
		n, err = c.nc.Read(p)
	}
	b.left -= int64(n)
	if b.left == 0 {
		if c.r == c.w {
			c.startBackgroundRead()
		}
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err // the rest of the body cannot be found any more
	}
	return n, err
}

func (b *body) Close() error { return nil }

// discard reads what the handler left of the body, up to limit bytes, so
// the connection can carry the next request; false: it cannot.
func (b *body) discard(limit int64) bool {
	b.mu.Lock()
	left, failed := b.left, b.err != nil
	b.mu.Unlock()
	if failed || left > limit {
		return false
	}
	if left == 0 {
		return true
	}
	b.c.nc.SetReadDeadline(deadline(b.c.limits.ReadHeaderTimeout))
	_, err := io.Copy(io.Discard, b)
	return err == nil
}
