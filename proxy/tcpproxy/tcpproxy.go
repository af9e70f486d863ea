// Package tcpproxy forwards opaque byte streams to a cluster endpoint,
// counting connections and bytes.
package tcpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// connectAttempts tries other endpoints when one refuses the connection.
const connectAttempts = 3

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Serve proxies client to an endpoint of c until both directions are done
// or nothing moves for idle. It closes client.
func Serve(ctx context.Context, client net.Conn, c *upstream.Cluster, stats *metrics.Route, idle time.Duration) error {
	defer client.Close()
	var backend net.Conn
	var err error
	var tried [connectAttempts]*balance.Endpoint
	for i := range connectAttempts {
		ep := c.Pick(tried[:i]...) // another endpoint than those that refused, while there is one
		if ep == nil {
			return errors.New("no endpoint available")
		}
		ep.Start()
		t0 := time.Now()
		backend, err = c.Dial(ctx, ep)
		if err == nil {
			ep.Done(time.Since(t0), false)
			c.Outlier.Record(c.Endpoints, ep, balance.Success)
			break
		}
		result := upstream.DialResult(err)
		if result == balance.NotEndpoint {
			ep.Release() // this proxy's own failure (no certificate): no other endpoint helps
			return err
		}
		ep.Done(time.Since(t0), true)
		if c.Outlier.Record(c.Endpoints, ep, result) {
			stats.Ejections.Inc()
		}
		tried[i] = ep
	}
	if err != nil {
		return err
	}
	defer backend.Close()
	stats.TCPOpened.Inc()
	defer stats.TCPClosed.Inc()

	Pipe(client, backend, idle, stats.TCPReceived.Add, stats.TCPSent.Add)
	return nil
}

// Pipe copies both ways between client and backend until both directions
// are done or nothing moves either way for idle (0: no idle limit); received
// and sent count the bytes from and to the client. Half-closes pass through.
// The caller closes both connections afterwards.
func Pipe(client, backend net.Conn, idle time.Duration, received, sent func(float64)) {
	var last atomic.Int64 // unix ns of the last byte in either direction
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyIdle(backend, client, idle, &last, received)
	}()
	copyIdle(client, backend, idle, &last, sent)
	<-done
}

// copyIdle copies until EOF, an error, or idle with no data, then half-closes
// dst so the other direction can still finish (a client's shutdown(SHUT_WR)).
func copyIdle(dst, src net.Conn, idle time.Duration, last *atomic.Int64, count func(float64)) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			count(float64(n))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction is busy: not idle
				}
				src.Close()
				dst.Close()
				return
			}
			if err == io.EOF {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
					return
				}
			}
			dst.Close()
			return
		}
	}
}
