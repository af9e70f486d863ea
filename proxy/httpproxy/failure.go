package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// Why an attempt or a response failed, so that the client gets the right
// status, metrics the right reason, and outlier detection and the EWMA learn
// only from the endpoint's own failures.
var (
	errClientGone   = errors.New("client went away")
	errRouteTimeout = errors.New("route timeout")
)

// upstreamBodyError is a response body that broke after the status was sent.
type upstreamBodyError struct{ err error }

func (e *upstreamBodyError) Error() string { return "read upstream body: " + e.err.Error() }
func (e *upstreamBodyError) Unwrap() error { return e.err }

// classify names the cause of an attempt's failure and says what the
// endpoint learns from it.
func classify(out *http.Request, cb *clientBody, resp *http.Response, err error, deadline time.Time) (error, balance.Result) {
	if err == nil {
		if resp.StatusCode >= 500 {
			return nil, balance.Status5xx
		}
		return nil, balance.Success
	}
	ctxErr := out.Context().Err()
	switch {
	case cb != nil && cb.failed() != nil:
		return cb.failed(), balance.NotEndpoint
	case errors.Is(ctxErr, context.Canceled) || errors.Is(err, upstream.ErrClientGone):
		return fmt.Errorf("%w: %w", errClientGone, err), balance.NotEndpoint
	case errors.Is(ctxErr, context.DeadlineExceeded) || (!deadline.IsZero() && !time.Now().Before(deadline)):
		return fmt.Errorf("%w: %w", errRouteTimeout, err), balance.NotEndpoint
	case upstream.IsHeadersTooLarge(err):
		return err, balance.Status5xx
	case isLocalMeshFailure(err):
		return err, balance.NotEndpoint
	}
	// Refused, dial timeout, reset, closed before the response; and a meshed endpoint that is
	// not the workload discovery names (or fails the handshake): it cannot serve this route.
	return err, balance.ConnectFailure // refused, dial timeout, reset, closed before the response
}

// failureReason is the metrics reason of a failed request, "" for none
// beyond its status.
func failureReason(err error) string {
	if err == nil {
		return "" // before the targets of errors.As below, which escape
	}
	var bodyErr *clientBodyError
	var ube *upstreamBodyError
	switch {
	case errors.As(err, &ube):
		if errors.Is(err, context.DeadlineExceeded) {
			return "route_timeout"
		}
		return "upstream_reset"
	case errors.As(err, &bodyErr):
		if bodyErr.timeout {
			return "request_body_timeout"
		}
		return "bad_request_body"
	case errors.Is(err, errClientGone):
		return "client_disconnect"
	case errors.Is(err, errRouteTimeout):
		return "route_timeout"
	case upstream.IsHeadersTooLarge(err):
		return "upstream_headers_too_large"
	}
	if me := upstream.AsMeshError(err); me != nil {
		return me.Reason
	}
	return ""
}

// isLocalMeshFailure: a meshed endpoint could not be reached for this proxy's own reason (no
// certificate yet under STRICT), which says nothing about the endpoint.
func isLocalMeshFailure(err error) bool {
	me := upstream.AsMeshError(err)
	return me != nil && !me.Endpoint
}

// clientBodyError is a request body that could not be read from the client.
type clientBodyError struct {
	err     error
	timeout bool
}

func (e *clientBodyError) Error() string {
	if e.timeout {
		return "request body: client sent nothing for too long"
	}
	return "request body: " + e.err.Error()
}
func (e *clientBodyError) Unwrap() error { return e.err }

// clientBody is the request body as read from the client: each read must
// make progress within the idle timeout, and a failure is remembered so it
// is blamed on the client, not on the endpoint the body was going to.
type clientBody struct {
	rc    io.ReadCloser
	ctl   *http.ResponseController
	idle  time.Duration
	armed time.Time

	mu    sync.Mutex // the transport may read on its own goroutine
	err   *clientBodyError
	ended bool // the handler returned: ctl must not be used any more
}

// RequestBodyGuard is what GuardRequestBody installed; the handler releases it when it returns.
type RequestBodyGuard struct{ b *clientBody }

// Release tells the guard that the handler has returned. The transport may still read the
// request body on its own goroutine after that (an upstream that answers before the request
// body ends): net/http's HTTP/2 ResponseWriter crashes if its deadlines are set then.
func (g RequestBodyGuard) Release() {
	if g.b == nil {
		return
	}
	g.b.mu.Lock()
	g.b.ended = true
	g.b.mu.Unlock()
}

// GuardRequestBody bounds the wait for each part of the request body with
// idle (0: no bound) and keeps read failures for the status and metrics. The handler calls
// Release on the result when it returns.
func GuardRequestBody(w http.ResponseWriter, r *http.Request, idle time.Duration) RequestBodyGuard {
	// An HTTP/2 request of length 0 (END_STREAM on its HEADERS, or content-length: 0, which
	// net/http enforces) has no body to wait for: not guarding it saves two allocations per
	// body-less stream.
	if r.Body == nil || r.Body == http.NoBody || r.ProtoMajor == 2 && r.ContentLength == 0 {
		return RequestBodyGuard{}
	}
	cb := &clientBody{rc: r.Body, idle: idle}
	if idle > 0 {
		cb.ctl = http.NewResponseController(w)
	}
	r.Body = cb
	return RequestBodyGuard{cb}
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.ctl != nil {
		// Re-arm the deadline only every idle/8, so a fast body costs no
		// timer update per read; a stall still ends within idle.
		if now := time.Now(); now.Sub(b.armed) > b.idle/8 {
			b.mu.Lock()
			if !b.ended {
				b.ctl.SetReadDeadline(now.Add(b.idle))
			}
			b.mu.Unlock()
			b.armed = now
		}
	}
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		var ne net.Error
		e := &clientBodyError{err: err, timeout: errors.As(err, &ne) && ne.Timeout()}
		b.mu.Lock()
		if b.err == nil {
			b.err = e
		}
		b.mu.Unlock()
		return n, e
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

func (b *clientBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		return nil
	}
	return b.err
}

// streamWriteTimeout bounds each write of an HTTP/2 response: a stream whose
// client stops reading (its flow-control window stays shut while the
// connection is otherwise busy) is reset instead of blocking forever. HTTP/1
// needs none: the listener bounds writes on the connection itself.
type streamWriteTimeout struct {
	http.ResponseWriter
	ctl   *http.ResponseController
	d     time.Duration
	armed time.Time
}

// GuardResponseWrites applies d (0: off) to the writes of an HTTP/2 response.
func GuardResponseWrites(w http.ResponseWriter, r *http.Request, d time.Duration) http.ResponseWriter {
	if d <= 0 || r.ProtoMajor != 2 {
		return w
	}
	return &streamWriteTimeout{ResponseWriter: w, ctl: http.NewResponseController(w), d: d}
}

func (w *streamWriteTimeout) Write(b []byte) (int, error) {
	if now := time.Now(); now.Sub(w.armed) > w.d/8 {
		w.ctl.SetWriteDeadline(now.Add(w.d))
		w.armed = now
	}
	return w.ResponseWriter.Write(b)
}

func (w *streamWriteTimeout) Flush() { w.ctl.Flush() }

func (w *streamWriteTimeout) Unwrap() http.ResponseWriter { return w.ResponseWriter }
