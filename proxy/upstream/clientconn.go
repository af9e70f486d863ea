package upstream

import (
	"context"
	"errors"
	"sync/atomic"
)

// ErrClientGone is returned by RoundTripH1 when the client's connection
// failed during the exchange (the exchange was aborted for it).
var ErrClientGone = errors.New("client connection closed during the exchange")

// ClientConn lets the listener tell fast-path exchanges that an HTTP/1
// client connection has failed, so the exchange on its behalf is aborted at
// once. It is the per-connection alternative to a context.AfterFunc per
// request (an allocation-heavy registration in the request context's
// children): an HTTP/1 connection carries one exchange at a time, so one
// slot per connection, set and cleared with an atomic store, is enough.
// HTTP/2 streams, which end without their connection, and HTTP/1 over TLS,
// whose close_notify ends the stream without the socket failing, keep
// AfterFunc.
type ClientConn struct {
	gone atomic.Bool
	busy atomic.Pointer[h1Conn] // the upstream connection of the current exchange
}

// Gone records that the client connection failed (read EOF or error, write
// error) and aborts the exchange running for it, if any.
func (c *ClientConn) Gone() {
	c.gone.Store(true)
	if pc := c.busy.Swap(nil); pc != nil {
		pc.abort()
	}
}

// watch makes Gone abort pc until unwatch.
func (c *ClientConn) watch(pc *h1Conn) {
	c.busy.Store(pc)
	if c.gone.Load() && c.busy.CompareAndSwap(pc, nil) {
		pc.abort() // gone before the exchange started
	}
}

// unwatch ends the watch of pc; false: the client went away and pc was
// aborted (or is being aborted) for it.
func (c *ClientConn) unwatch(pc *h1Conn) bool {
	return c.busy.CompareAndSwap(pc, nil)
}

type clientConnKey struct{}

// WithClientConn makes the HTTP/1 requests of a connection (ctx is its
// http.Server ConnContext) report to c.
func WithClientConn(ctx context.Context, c *ClientConn) context.Context {
	return context.WithValue(ctx, clientConnKey{}, c)
}

func clientConnFrom(ctx context.Context) *ClientConn {
	c, _ := ctx.Value(clientConnKey{}).(*ClientConn)
	return c
}
