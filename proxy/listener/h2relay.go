package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"

	"github.com/knit-mesh/knit/proxy/detect"
	"github.com/knit-mesh/knit/proxy/h2relay"
)

// relayReadBufferSize holds a burst of a relayed client's frames.
const relayReadBufferSize = 16 << 10

// relays says whether new HTTP/2 connections of this listener go to the frame relay.
func (l *Listener) relays() bool { return l.relay != nil && l.relay.Eligible() }

// serveHTTPMaybeRelayed serves a plaintext HTTP connection: h2c (prior knowledge) through the
// frame relay, anything else through net/http as before. It runs in a tracked goroutine.
func (l *Listener) serveHTTPMaybeRelayed(c net.Conn, s *Settings) {
	proto, conn, err := detect.Sniff(c, s.Config.DetectTimeout.D())
	if err != nil {
		c.Close()
		return
	}
	if proto == detect.HTTP2 {
		l.relay.ServeConn(conn, bufio.NewReaderSize(conn, relayReadBufferSize))
		return
	}
	l.untrack(c)
	l.serveH1(conn, func(c net.Conn) net.Conn { return newFramingConn(c) })
}

// serveTLSMaybeRelayed terminates TLS and serves a connection that negotiated h2 through the
// frame relay, anything else through net/http (which takes the finished handshake as it is).
func (l *Listener) serveTLSMaybeRelayed(c, conn net.Conn, s *Settings) {
	tc := tls.Server(conn, s.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), s.Config.Limits.ReadHeaderTimeout.D())
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		l.relay.ServeConn(tc, bufio.NewReaderSize(tc, relayReadBufferSize))
		return
	}
	l.untrack(c)
	l.serveHTTP(tc)
}

// newRelay is the listener's frame relay, unless the process turns it off (h2relay.EnvSwitch).
func newRelay(l *Listener, s *Settings) *h2relay.Server {
	if !h2relay.EnabledByEnvironment() {
		return nil
	}
	return h2relay.NewServer(l.handler, s.Config.Limits, l.log.WithName("h2relay"))
}
