package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/knit-mesh/knit/proxy/identity"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// ErrNoCertificate is the reason a meshed endpoint is not reached under STRICT before the
// sidecar holds a valid certificate.
var ErrNoCertificate = errors.New("no valid workload certificate yet, and mtls.mode STRICT forbids plaintext to meshed endpoints")

// Outbound is the client side of mutual TLS between sidecars: connections to an endpoint that
// discovery marks as meshed present the workload certificate, offer knit's ALPN protocol and
// accept only the SPIFFE ID discovery expects of that endpoint. The bytes inside are the app's
// protocol, unchanged; the server side detects it after the handshake.
//
// Without a valid certificate (before the first one, or after it expired with the control
// plane gone), STRICT refuses to reach meshed endpoints, and PERMISSIVE speaks plaintext to
// them: under PERMISSIVE their sidecars accept plaintext too.
type Outbound struct {
	Mode     Mode
	Identity *identity.Manager
	Log      logr.Logger
	// HandshakeTimeout bounds one handshake (the caller's context may end it sooner).
	HandshakeTimeout time.Duration

	handshakes  *prometheus.CounterVec
	unavailable *prometheus.CounterVec
}

// NewOutbound registers the outbound mutual TLS counters in reg.
func NewOutbound(mode Mode, id *identity.Manager, log logr.Logger, reg prometheus.Registerer) (*Outbound, error) {
	o := &Outbound{Mode: mode, Identity: id, Log: log, HandshakeTimeout: 10 * time.Second,
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_proxy_outbound_mtls_handshakes_total",
			Help: "Mutual TLS handshakes with meshed endpoints by result (ok, peer_identity_mismatch, untrusted_peer, mtls_handshake_failed; retried: the peer did not take it as TLS, tried once more on a fresh connection) and the SPIFFE ID expected of the peer.",
		}, []string{"result", "peer_identity"}),
		unavailable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_proxy_outbound_mtls_unavailable_total",
			Help: "Requests and connections to meshed endpoints while the sidecar held no valid certificate, by what was done (refused under STRICT, plaintext under PERMISSIVE).",
		}, []string{"action"}),
	}
	for _, c := range []prometheus.Collector{o.handshakes, o.unavailable} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mtls metrics: %w", err)
		}
	}
	return o, nil
}

// Use implements upstream.MeshTLS.
func (o *Outbound) Use() (uint64, bool, error) {
	if o.Identity.Ready() {
		return o.Identity.Generation(), false, nil
	}
	if o.Mode == Permissive {
		o.unavailable.WithLabelValues("plaintext").Inc()
		return 0, true, nil
	}
	o.unavailable.WithLabelValues("refused").Inc()
	return 0, false, &upstream.MeshError{Reason: "no_workload_certificate", Err: ErrNoCertificate}
}

// Client implements upstream.MeshTLS: the handshake as this workload, expecting id.
func (o *Outbound) Client(ctx context.Context, conn net.Conn, id string, retry bool) (net.Conn, error) {
	tc := tls.Client(conn, o.Identity.ClientTLSConfig(id))
	ctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		me := &upstream.MeshError{Reason: "mtls_handshake_failed", Endpoint: true, Err: err}
		switch {
		case errors.Is(err, identity.ErrPeerIdentityMismatch):
			me.Reason = "peer_identity_mismatch"
		case errors.Is(err, identity.ErrUntrustedPeer):
			me.Reason = "untrusted_peer"
		case ctx.Err() != nil:
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				me.Endpoint = false // the request went away, not the endpoint
			}
		case !retry && peerNotTLS(err):
			me.Retry = true
		}
		result := me.Reason
		if me.Retry {
			result = "retried"
		}
		o.handshakes.WithLabelValues(result, id).Inc()
		o.Log.V(1).Info("mutual TLS to a meshed endpoint failed", "endpoint", conn.RemoteAddr().String(),
			"expectedIdentity", id, "reason", result, "error", err.Error())
		return nil, me
	}
	o.handshakes.WithLabelValues("ok", id).Inc()
	return tc, nil
}

// peerNotTLS says the peer did not take the handshake as TLS: it answered with bytes that are
// not a TLS record (its sidecar passed the ClientHello to the app, which answered in its own
// protocol), or it closed the connection (its sidecar refused what it took for plaintext).
// Both happen when the ClientHello reaches a sidecar after its protocol detection gave up.
func peerNotTLS(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
