package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"

	"github.com/knit-mesh/knit/proxy/http1"
)

// The HTTP/1.1 fast path: plaintext HTTP/1.1 upstreams get a connection pool
// of our own instead of http.Transport. A request is written and its response
// read on the caller's goroutine, so a request costs no goroutine hand-offs
// (http.Transport runs a read and a write goroutine per connection and passes
// every request and response between them over channels). Upgrades, HTTP/2
// and TLS upstreams stay on http.Transport.
//
// A connection goes back to the pool only when it is provably clean: the
// response was read to its end, the server did not ask to close, and no byte
// beyond the response is buffered. Before every reuse, a non-blocking peek
// checks that the server has not closed it and sent nothing unasked for.

const h1BufSize = 4 << 10

// ErrResponseHeadersTooLarge is returned when an upstream's response header
// block is larger than the cluster's MaxResponseHeaderBytes.
var ErrResponseHeadersTooLarge = errors.New("upstream response headers too large")

// h1Pool keeps idle keep-alive connections per endpoint address, newest
// first, and caps the connections open to each address.
type h1Pool struct {
	dialer    *net.Dialer
	maxIdle   int
	maxConns  int // 0: no cap
	idleFor   time.Duration
	maxHeader int64

	// handshake, when set, wraps each new connection (mutual TLS to a meshed endpoint).
	handshake handshakeFunc

	mu     sync.Mutex
	hosts  map[string]*h1Host
	closed bool // the cluster was replaced: returned connections are closed
}

type h1Host struct {
	idle []*h1Conn
	open int // dialing, busy and idle connections
	// waiters get a clean connection, or nil meaning "a slot is free: dial".
	waiters []chan *h1Conn
}

type h1Conn struct {
	conn        net.Conn
	raw         syscall.RawConn // for the liveness peek; nil if conn has no fd
	br          *bufio.Reader   // reads through h1Conn.Read (header limit)
	bw          *bufio.Writer   // writes through h1Conn.Write (byte count)
	addr        string
	pool        *h1Pool
	lastUsed    time.Time
	hasDeadline bool
	readLimit   int64 // bytes that may still be read; bounds a header block
	read        int64 // bytes read from the socket in all
	written     int64 // bytes handed to the socket for the current request

	// Bound once per connection, so a request allocates no closures.
	peekFd    func(fd uintptr)
	peekN     uintptr
	peekErrno syscall.Errno
	abortFn   func()

	// Who aborts the current exchange when its client goes away: an HTTP/1
	// client connection, or else a context.AfterFunc (stopCtx).
	client  *ClientConn
	stopCtx func() bool
	body    countingReader // the current request's body, counted
}

func (c *h1Conn) Read(p []byte) (int, error) {
	if c.readLimit <= 0 {
		return 0, fmt.Errorf("%w (limit %d bytes)", ErrResponseHeadersTooLarge, c.pool.maxHeader)
	}
	if int64(len(p)) > c.readLimit {
		p = p[:c.readLimit]
	}
	n, err := c.conn.Read(p)
	c.readLimit -= int64(n)
	c.read += int64(n)
	return n, err
}

func (c *h1Conn) Write(p []byte) (int, error) {
	n, err := c.conn.Write(p)
	c.written += int64(n)
	return n, err
}

// clean reports whether the connection may carry another request: nothing
// buffered, and the socket neither closed by the server nor holding bytes.
func (c *h1Conn) clean() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
		return true
	}
	// Control, not Read: no deadline check (an idle connection keeps its last
	// exchange's deadline; the next exchange sets its own) and no poller.
	if err := c.raw.Control(c.peekFd); err != nil {
		return false
	}
	// EAGAIN: open and nothing to read. 0 bytes: the server closed it.
	// 1 byte: the server sent something nobody asked for.
	return (c.peekErrno == syscall.EAGAIN || c.peekErrno == syscall.EWOULDBLOCK) && c.peekN != 1
}

// peek looks at the socket without reading or blocking (MSG_DONTWAIT), so a
// raw syscall is enough: it never parks the thread.
func (c *h1Conn) peek(fd uintptr) {
	var b [1]byte
	c.peekN, _, c.peekErrno = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
}

// abort unblocks whatever the exchange waits on; the connection is then
// discarded (unwatch reports it).
func (c *h1Conn) abort() { c.conn.SetDeadline(aLongTimeAgo) }

// watch arranges for the exchange on c to be aborted when its client goes
// away: through the client's connection for HTTP/1 (cc), else through ctx.
func (c *h1Conn) watch(ctx context.Context, cc *ClientConn) {
	if cc != nil {
		c.client = cc
		cc.watch(c)
		return
	}
	c.stopCtx = context.AfterFunc(ctx, c.abortFn)
}

// unwatch ends the watch; false: the exchange was aborted for its client.
func (c *h1Conn) unwatch() bool {
	if cc := c.client; cc != nil {
		c.client = nil
		return cc.unwatch(c)
	}
	if stop := c.stopCtx; stop != nil {
		c.stopCtx = nil
		return stop()
	}
	return true
}

func newH1Pool(d *net.Dialer, maxIdle, maxConns int, idleFor time.Duration, maxHeader int) *h1Pool {
	if idleFor <= 0 {
		idleFor = 90 * time.Second
	}
	if maxHeader <= 0 {
		maxHeader = 64 << 10
	}
	return &h1Pool{dialer: d, maxIdle: maxIdle, maxConns: maxConns, idleFor: idleFor,
		maxHeader: int64(maxHeader), hosts: map[string]*h1Host{}}
}

func (p *h1Pool) host(addr string) *h1Host {
	h := p.hosts[addr]
	if h == nil {
		h = &h1Host{}
		p.hosts[addr] = h
	}
	return h
}

var errPoolWait = errors.New("timed out waiting for an upstream connection (maxConnectionsPerEndpoint reached)")

// get returns a clean idle connection or a new one; at the connection cap it
// waits for one until ctx ends or the deadline passes. fresh skips the idle
// connections: a retry after a pooled connection turned out closed, since the
// server likely closed its other idle connections at the same moment (the
// closed one's slot is free for it; at the cap it waits as any request does).
func (p *h1Pool) get(ctx context.Context, addr string, deadline time.Time, fresh bool) (*h1Conn, bool, error) {
	now := time.Now()
	p.mu.Lock()
	h := p.host(addr)
	for !fresh && len(h.idle) > 0 {
		pc := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if now.Sub(pc.lastUsed) < p.idleFor {
			p.mu.Unlock()
			if pc.clean() {
				return pc, true, nil
			}
			p.discard(pc)
			p.mu.Lock()
			h = p.host(addr) // release may have dropped the entry
			continue
		}
		h.open--
		pc.conn.Close()
	}
	if p.maxConns <= 0 || h.open < p.maxConns {
		h.open++
		p.mu.Unlock()
		return p.dial(ctx, addr, deadline)
	}
	ch := make(chan *h1Conn, 1)
	h.waiters = append(h.waiters, ch)
	p.mu.Unlock()

	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	var err error
	select {
	case pc := <-ch:
		if pc != nil {
			return pc, true, nil
		}
		return p.dial(ctx, addr, deadline) // the slot of a closed connection
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = fmt.Errorf("%w: %w", errPoolWait, context.DeadlineExceeded)
	}
	p.mu.Lock()
	h = p.host(addr)
	for i, w := range h.waiters {
		if w == ch {
			h.waiters = append(h.waiters[:i], h.waiters[i+1:]...)
			p.mu.Unlock()
			return nil, false, err
		}
	}
	p.mu.Unlock()
	// Handed something just as we gave up: pass it on.
	if pc := <-ch; pc != nil {
		p.put(pc)
	} else {
		p.release(addr)
	}
	return nil, false, err
}

func (p *h1Pool) dial(ctx context.Context, addr string, deadline time.Time) (*h1Conn, bool, error) {
	d := *p.dialer
	if !deadline.IsZero() && (d.Deadline.IsZero() || deadline.Before(d.Deadline)) {
		d.Deadline = deadline // the route's timeout bounds the dial too
	}
	var c, conn net.Conn
	var err error
	if p.handshake == nil {
		c, err = d.DialContext(ctx, "tcp", addr)
		conn = c
	} else {
		hctx := ctx
		if !d.Deadline.IsZero() {
			var cancel context.CancelFunc
			hctx, cancel = context.WithDeadline(ctx, d.Deadline)
			defer cancel()
		}
		// hctx carries d.Deadline, so the pool's own dialer is bounded as d is.
		c, conn, err = dialMesh(hctx, p.dialer.DialContext, addr, p.handshake)
	}
	if err != nil {
		p.release(addr)
		return nil, false, err
	}
	// The liveness peek stays on the socket: any byte on an idle TLS connection (a
	// close_notify, or anything else) makes it unclean, as in plaintext.
	pc := &h1Conn{conn: conn, addr: addr, pool: p, readLimit: math.MaxInt64}
	if sc, ok := c.(syscall.Conn); ok {
		if pc.raw, err = sc.SyscallConn(); err != nil {
			conn.Close()
			p.release(addr)
			return nil, false, err
		}
	}
	pc.br, pc.bw = bufio.NewReaderSize(pc, h1BufSize), bufio.NewWriterSize(pc, h1BufSize)
	pc.peekFd, pc.abortFn = pc.peek, pc.abort
	return pc, false, nil
}

// put returns a clean connection: to a waiter, or to the idle list.
func (p *h1Pool) put(pc *h1Conn) {
	pc.body = countingReader{} // drop the request body
	pc.lastUsed = time.Now()
	p.mu.Lock()
	h := p.host(pc.addr)
	if len(h.waiters) > 0 && !p.closed {
		w := h.waiters[0]
		h.waiters = h.waiters[1:]
		p.mu.Unlock()
		w <- pc
		return
	}
	if p.closed || len(h.idle) >= p.maxIdle {
		p.mu.Unlock()
		p.discard(pc) // frees the slot, to a waiter if any
		return
	}
	h.idle = append(h.idle, pc)
	p.mu.Unlock()
}

// discard closes a connection that is not clean and frees its slot.
func (p *h1Pool) discard(pc *h1Conn) {
	pc.conn.Close()
	p.release(pc.addr)
}

// release frees one connection slot of addr, to a waiter if there is one.
func (p *h1Pool) release(addr string) {
	p.mu.Lock()
	h := p.host(addr)
	if len(h.waiters) > 0 {
		w := h.waiters[0]
		h.waiters = h.waiters[1:]
		p.mu.Unlock()
		w <- nil
		return
	}
	h.open--
	if h.open == 0 && len(h.idle) == 0 {
		delete(p.hosts, addr)
	}
	p.mu.Unlock()
}

func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, h := range p.hosts {
		for _, pc := range h.idle {
			pc.conn.Close()
			h.open--
		}
		h.idle = nil
	}
}

// aLongTimeAgo is a deadline that has passed: setting it unblocks I/O now.
var aLongTimeAgo = time.Unix(1, 0)

// RoundTripH1 sends req to addr over a pooled connection. deadline (if not
// zero) bounds the whole exchange including reading the body; the request's
// context (the client's) ending aborts it too. A pooled connection that
// fails before the response is retried once on a fresh connection when that
// is safe: no byte of the request reached the socket (and its body can be
// sent again), or the request is idempotent and has no body, as in net/http.
func (c *Cluster) RoundTripH1(req *http.Request, addr string, deadline time.Time) (*http.Response, error) {
	return c.roundTripH1(c.h1, req, addr, deadline)
}

func (c *Cluster) roundTripH1(pool *h1Pool, req *http.Request, addr string, deadline time.Time) (*http.Response, error) {
	ctx := req.Context()
	var cc *ClientConn
	if req.ProtoMajor == 1 {
		cc = clientConnFrom(ctx)
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := pool.get(ctx, addr, deadline, attempt > 0)
		if err != nil {
			return nil, err
		}
		if !deadline.IsZero() || pc.hasDeadline {
			pc.conn.SetDeadline(deadline)
			pc.hasDeadline = !deadline.IsZero()
		}
		// The client going away unblocks whatever the exchange waits on.
		pc.watch(ctx, cc)
		pc.written = 0
		body := &pc.body
		*body = countingReader{}
		if req.Body != nil && req.Body != http.NoBody {
			body.r = req.Body
		}
		err = writeRequest(pc.bw, req, body, addr)
		var resp *http.Response
		var respBody *h1Body
		if err == nil {
			pc.readLimit = pool.maxHeader + h1BufSize
			resp, respBody, err = readResponse(pc.br, req)
			// Skip informational responses (100 Continue, 103 Early Hints);
			// 101 is final and is only asked for on the http.Transport path.
			for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
				resp, respBody, err = readResponse(pc.br, req)
			}
			pc.readLimit = math.MaxInt64
		}
		if err != nil {
			aborted := !pc.unwatch()
			pool.discard(pc)
			if aborted {
				// The abort may come before net/http cancels ctx: say why.
				return nil, fmt.Errorf("%w: %w", ErrClientGone, err)
			}
			if reused && attempt == 0 && ctx.Err() == nil && body.err == nil && retryableOnFreshConn(req, err, pc.written, body.n) {
				if pc.written == 0 && body.n > 0 {
					req.Body, _ = req.GetBody() // retryableOnFreshConn checked GetBody
				}
				continue
			}
			return nil, err
		}
		keep := !resp.Close && !req.Close
		if resp.Body == http.NoBody {
			finish(pc, keep)
			return resp, nil
		}
		respBody.rc, respBody.pc, respBody.keep = resp.Body, pc, keep
		resp.Body = respBody
		return resp, nil
	}
}

// finish ends an exchange whose response was read to its end.
func finish(pc *h1Conn, keep bool) {
	if pc.unwatch() && keep && pc.br.Buffered() == 0 {
		pc.pool.put(pc)
		return
	}
	pc.pool.discard(pc)
}

type countingReader struct {
	r   io.Reader
	n   int64
	err error // a read error other than EOF: the client's body failed
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// retryableOnFreshConn decides for a request that failed on a reused
// connection before any response byte. written is what reached the socket,
// bodyRead what was taken from the request body.
func retryableOnFreshConn(req *http.Request, err error, written, bodyRead int64) bool {
	if errors.Is(err, ErrResponseHeadersTooLarge) || isTimeout(err) {
		return false
	}
	if written == 0 {
		// The server saw nothing: any request may go again, if its body can.
		return bodyRead == 0 || req.GetBody != nil
	}
	if req.Body != nil && req.Body != http.NoBody {
		return false // part of the body may have been processed
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isConnReset(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "read" || op.Op == "write") && !op.Timeout()
}

// writeRequest writes the request line, headers and body (read from body,
// which wraps req.Body). Hop-by-hop headers were removed by the caller.
func writeRequest(bw *bufio.Writer, req *http.Request, body *countingReader, addr string) error {
	if err := validRequestTarget(req); err != nil {
		return err
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	if req.URL.Opaque != "" {
		bw.WriteString(req.URL.Opaque)
	} else {
		p := req.URL.EscapedPath()
		if p == "" {
			p = "/"
		}
		bw.WriteString(p)
	}
	if req.URL.RawQuery != "" || req.URL.ForceQuery {
		bw.WriteByte('?')
		bw.WriteString(req.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" {
		host = addr
	}
	if !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("invalid Host %q", host)
	}
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		if framingHeader(k) {
			continue // Host written above; framing decided below; body is sent at once
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid value for header %q", k)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	switch {
	case body.r == nil || req.ContentLength == 0:
		if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
		bw.WriteString("\r\n")
	case req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		if n, err := io.CopyN(bw, body, req.ContentLength); err != nil {
			return fmt.Errorf("copy request body (%d of %d bytes): %w", n, req.ContentLength, err)
		}
	default: // unknown length: stream it chunked
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(bw)
		if _, err := io.Copy(cw, body); err != nil {
			return fmt.Errorf("copy request body: %w", err)
		}
		cw.Close()
		bw.WriteString("\r\n")
	}
	return bw.Flush()
}

// framingHeader: headers the writer decides itself, in any letter case, so
// a caller's header map can never add a second framing of the body.
func framingHeader(k string) bool {
	switch len(k) {
	case len("Host"):
		return strings.EqualFold(k, "Host")
	case len("Expect"):
		return strings.EqualFold(k, "Expect")
	case len("Content-Length"):
		return strings.EqualFold(k, "Content-Length")
	case len("Transfer-Encoding"):
		return strings.EqualFold(k, "Transfer-Encoding")
	}
	return false
}

// validRequestTarget refuses a method or target that would change the
// request line's meaning (spaces, control bytes).
func validRequestTarget(req *http.Request) error {
	if !httpguts.ValidHeaderFieldName(req.Method) { // a method is a token, as a field name is
		return fmt.Errorf("invalid method %q", req.Method)
	}
	if o := req.URL.Opaque; o != "" && !strings.HasPrefix(o, "/") {
		return fmt.Errorf("request target %q is neither origin-form nor absolute-form", o)
	}
	for _, s := range [...]string{req.URL.Opaque, req.URL.RawQuery} {
		for i := 0; i < len(s); i++ {
			if b := s[i]; b <= ' ' || b == 0x7f {
				return fmt.Errorf("invalid byte %#x in request target", b)
			}
		}
	}
	return nil
}

// readResponse reads a response head as http.ReadResponse does: in place
// when http1.ReadResponseHead takes it, else with http.ReadResponse. body is
// the h1Body to wrap a response body in, allocated with the response read in
// place; for that one, resp.Body is nil (body reads the bytes the head
// announced from br) or http.NoBody.
func readResponse(br *bufio.Reader, req *http.Request) (resp *http.Response, body *h1Body, err error) {
	r := new(h1Response)
	if n, ok := http1.ReadResponseHead(br, req, &r.resp, r.vals[:]); ok {
		if n == 0 {
			r.resp.Body = http.NoBody
		}
		r.body.left = n
		return &r.resp, &r.body, nil
	}
	resp, err = http.ReadResponse(br, req)
	return resp, &r.body, err
}

// h1Response is a response read in place, its body's reader and room for
// its field values, in one allocation.
type h1Response struct {
	resp http.Response
	body h1Body
	vals [8]string
}

// h1Body returns the connection to the pool once the body is read to EOF. It
// reads the response's own body (rc), or else the left bytes on the
// connection that a head read in place announced.
type h1Body struct {
	rc   io.ReadCloser
	pc   *h1Conn
	left int64
	keep bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.rc == nil {
		return b.readLeft(p)
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done = true
		finish(b.pc, b.keep)
	}
	return n, err
}

// readLeft reads a body of known length as net/http's does: the last bytes
// come with io.EOF (so the connection goes back to the pool at once), and a
// connection that ends early is io.ErrUnexpectedEOF.
func (b *h1Body) readLeft(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.pc.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		b.done = true
		finish(b.pc, b.keep)
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close before EOF leaves unread bytes on the connection, so it is closed.
func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.pc.unwatch()
		b.pc.pool.discard(b.pc)
	}
	return nil
}
