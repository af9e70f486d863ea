package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"
)

// The HTTP/1.1 fast path: plaintext HTTP/1.1 upstreams get a connection pool
// of our own instead of http.Transport. A request is written and its response
// read on the caller's goroutine, so a request costs no goroutine hand-offs
// (http.Transport runs a read and a write goroutine per connection and passes
// every request and response between them over channels). Upgrades, HTTP/2
// and TLS upstreams stay on http.Transport.

const h1BufSize = 4 << 10

// h1Pool keeps idle keep-alive connections per endpoint address, newest first.
type h1Pool struct {
	dialer  *net.Dialer
	maxIdle int
	idleFor time.Duration

	mu     sync.Mutex
	idle   map[string][]*h1Conn
	closed bool // the cluster was replaced: returned connections are closed
}

type h1Conn struct {
	net.Conn
	br          *bufio.Reader
	bw          *bufio.Writer
	addr        string
	lastUsed    time.Time
	hasDeadline bool
}

func newH1Pool(d *net.Dialer, maxIdle int) *h1Pool {
	return &h1Pool{dialer: d, maxIdle: maxIdle, idleFor: 90 * time.Second, idle: map[string][]*h1Conn{}}
}

func (p *h1Pool) get(addr string) (*h1Conn, bool, error) {
	now := time.Now()
	p.mu.Lock()
	for list := p.idle[addr]; len(list) > 0; list = p.idle[addr] {
		pc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		if now.Sub(pc.lastUsed) < p.idleFor {
			p.mu.Unlock()
			return pc, true, nil
		}
		pc.Close()
	}
	p.mu.Unlock()
	c, err := p.dialer.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{Conn: c, addr: addr,
		br: bufio.NewReaderSize(c, h1BufSize), bw: bufio.NewWriterSize(c, h1BufSize)}, false, nil
}

func (p *h1Pool) put(pc *h1Conn) {
	pc.lastUsed = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle[pc.addr]) >= p.maxIdle {
		p.mu.Unlock()
		pc.Close()
		return
	}
	p.idle[pc.addr] = append(p.idle[pc.addr], pc)
	p.mu.Unlock()
}

func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for addr, list := range p.idle {
		for _, pc := range list {
			pc.Close()
		}
		delete(p.idle, addr)
	}
}

// RoundTripH1 sends req to addr over a pooled connection. deadline (if not
// zero) bounds the whole exchange including reading the body. A pooled
// connection the upstream had already closed is retried once on a fresh one
// when the request is idempotent and has no body, as net/http does.
func (c *Cluster) RoundTripH1(req *http.Request, addr string, deadline time.Time) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := c.h1.get(addr)
		if err != nil {
			return nil, err
		}
		if !deadline.IsZero() || pc.hasDeadline {
			pc.SetDeadline(deadline)
			pc.hasDeadline = !deadline.IsZero()
		}
		err = writeRequest(pc.bw, req, addr)
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(pc.br, req)
			// Skip informational responses (100 Continue, 103 Early Hints);
			// 101 is final and is only asked for on the http.Transport path.
			for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
				resp, err = http.ReadResponse(pc.br, req)
			}
		}
		if err != nil {
			pc.Close()
			if reused && attempt == 0 && retryableOnFreshConn(req, err) {
				continue
			}
			return nil, err
		}
		keep := !resp.Close && !req.Close
		if resp.Body == http.NoBody {
			if keep {
				c.h1.put(pc)
			} else {
				pc.Close()
			}
			return resp, nil
		}
		resp.Body = &h1Body{rc: resp.Body, pc: pc, pool: c.h1, keep: keep}
		return resp, nil
	}
}

func retryableOnFreshConn(req *http.Request, err error) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isConnReset(err)
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "read" || op.Op == "write") && !op.Timeout()
}

// writeRequest writes the request line, headers and body. Hop-by-hop
// headers were removed by the caller.
func writeRequest(bw *bufio.Writer, req *http.Request, addr string) error {
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
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		if k == "Host" || k == "Content-Length" || k == "Expect" {
			continue // Host written above; length decided below; body is sent at once
		}
		for _, v := range vv {
			if !validHeaderValue(v) {
				return fmt.Errorf("invalid value for header %q", k)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	body := req.Body
	switch {
	case body == nil || body == http.NoBody || req.ContentLength == 0:
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

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b == '\r' || b == '\n' || b == 0 {
			return false
		}
	}
	return true
}

// h1Body returns the connection to the pool once the body is read to EOF.
type h1Body struct {
	rc   io.ReadCloser
	pc   *h1Conn
	pool *h1Pool
	keep bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done = true
		if b.keep {
			b.pool.put(b.pc)
		} else {
			b.pc.Close()
		}
	}
	return n, err
}

// Close before EOF leaves unread bytes on the connection, so it is closed.
func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.pc.Close()
	}
	return nil
}
