package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/config"
)

// MeshTLS opens mutual TLS to meshed endpoints as this workload (proxy/mtls.Outbound).
type MeshTLS interface {
	// Use says how to reach a meshed endpoint now: over mutual TLS made with what generation
	// names (it changes when the local certificate or the trust bundle does), in plaintext
	// (plaintext: no certificate yet and the mode allows it), or not at all (an error).
	Use() (generation uint64, plaintext bool, err error)
	// Client runs the client handshake on conn, presenting the workload certificate and
	// accepting only a peer whose certificate carries id. Failures are *MeshError. retry says
	// conn is the fresh connection of a second try (see dialMesh): its failures are final.
	Client(ctx context.Context, conn net.Conn, id string, retry bool) (net.Conn, error)
}

// MeshError is a failure to open mutual TLS to a meshed endpoint. Endpoint says whether it is
// the endpoint's failure (it is not the workload discovery says, or its handshake failed),
// which outlier detection counts, or this proxy's (it has no certificate), which it does not.
type MeshError struct {
	// Reason is the metrics reason: peer_identity_mismatch, untrusted_peer,
	// mtls_handshake_failed, no_workload_certificate.
	Reason   string
	Endpoint bool
	// Retry says the peer did not take the handshake as TLS (it answered in plaintext or
	// closed the connection): a sidecar whose protocol detection gave up before the
	// ClientHello came. No request byte was sent, so one fresh connection may be tried.
	Retry bool
	Err   error
}

func (e *MeshError) Error() string { return "mutual TLS to a meshed endpoint: " + e.Err.Error() }
func (e *MeshError) Unwrap() error { return e.Err }

// AsMeshError returns the MeshError in err's chain, or nil.
func AsMeshError(err error) *MeshError {
	var me *MeshError
	if err != nil && errors.As(err, &me) {
		return me
	}
	return nil
}

// DialResult is what outlier detection learns from a failed dial: a connect failure, except
// when this proxy could not present a certificate.
func DialResult(err error) balance.Result {
	if me := AsMeshError(err); me != nil && !me.Endpoint {
		return balance.NotEndpoint
	}
	return balance.ConnectFailure
}

// handshakeFunc opens mutual TLS on a new connection; retry says it is the second try.
type handshakeFunc func(ctx context.Context, conn net.Conn, retry bool) (net.Conn, error)

// dialMesh dials addr and opens mutual TLS on the connection with handshake. A handshake the
// peer did not take as TLS (MeshError.Retry) is tried once more on a fresh connection; every
// other failure, identity ones first, is returned at once. It returns the TCP connection too.
func dialMesh(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string,
	handshake handshakeFunc) (raw, tc net.Conn, err error) {
	for retry := false; ; retry = true {
		if raw, err = dial(ctx, "tcp", addr); err != nil {
			return nil, nil, err
		}
		if tc, err = handshake(ctx, raw, retry); err == nil {
			return raw, tc, nil
		}
		raw.Close()
		if me := AsMeshError(err); retry || me == nil || !me.Retry {
			return nil, nil, err
		}
	}
}

// meshIdleTimeout keeps idle connections to meshed endpoints longer than the cluster's idle
// timeout, which is sized for apps' keep-alive (Node.js closes after 5 s): the peer is another
// sidecar, whose inbound side keeps idle connections for config.DefaultIdleTimeout (90 s), and
// each new connection costs a mutual TLS handshake.
const meshIdleTimeout = 60 * time.Second

// meshPools are the connection pools to meshed endpoints, one per expected peer identity and
// per generation of the local certificate and trust bundle: a renewal or a root change sends
// new requests over new connections, while requests in flight finish on the old ones (which
// close when they are returned, or when idle).
type meshPools struct {
	newPool func(id string) *meshPool

	mu         sync.Mutex
	generation uint64
	byID       map[string]*meshPool
}

type meshPool struct {
	h1        *h1Pool         // HTTP/1 clusters (the fast path)
	transport *http.Transport // HTTP/2 clusters
}

func (p *meshPool) retire() {
	if p.h1 != nil {
		p.h1.closeIdle()
	}
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
}

func (m *meshPools) get(id string, generation uint64) *meshPool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if generation != m.generation {
		for _, p := range m.byID {
			p.retire()
		}
		m.byID, m.generation = map[string]*meshPool{}, generation
	}
	p := m.byID[id]
	if p == nil {
		p = m.newPool(id)
		m.byID[id] = p
	}
	return p
}

func (m *meshPools) closeIdle() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.byID {
		p.retire()
	}
	m.byID = map[string]*meshPool{}
}

// newMeshPools builds pools whose connections are made by mesh.Client after the TCP dial.
func (c *Cluster) newMeshPools() *meshPools {
	mesh, spec := c.mesh, c.Spec
	return &meshPools{byID: map[string]*meshPool{}, newPool: func(id string) *meshPool {
		handshake := func(ctx context.Context, conn net.Conn, retry bool) (net.Conn, error) {
			return mesh.Client(ctx, conn, id, retry)
		}
		if spec.Protocol == config.ClusterHTTP2 {
			t := c.newTransport()
			t.TLSClientConfig = nil
			t.IdleConnTimeout = meshIdleTimeout
			// The inner protocol is h2 with prior knowledge, as to a plaintext endpoint: the
			// dial below returns the connection already inside mutual TLS.
			t.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
				_, tc, err := dialMesh(ctx, c.dialer.DialContext, addr, handshake)
				return tc, err
			}
			return &meshPool{transport: t}
		}
		h1 := newH1Pool(c.dialer, spec.MaxIdleConnsPerEndpoint, spec.MaxConnectionsPerEndpoint,
			meshIdleTimeout, spec.MaxResponseHeaderBytes)
		h1.handshake = handshake
		return &meshPool{h1: h1}
	}}
}

// meshPool says how to reach ep: nil for plaintext (the endpoint is not meshed, the cluster
// has no mesh identity, or no certificate yet and the mode allows plaintext), a pool for
// mutual TLS, or an error when the endpoint may not be reached at all.
func (c *Cluster) meshPool(ep *balance.Endpoint) (*meshPool, error) {
	if ep.Identity == "" || c.meshPools == nil {
		return nil, nil
	}
	gen, plaintext, err := c.mesh.Use()
	if err != nil || plaintext {
		return nil, err
	}
	return c.meshPools.get(ep.Identity, gen), nil
}

// RoundTrip sends one attempt to ep: on the HTTP/1 fast path when fast (the cluster is
// FastH1), else through http.Transport with req.URL.Host set to the endpoint; in mutual TLS
// when the endpoint is meshed.
func (c *Cluster) RoundTrip(req *http.Request, ep *balance.Endpoint, fast bool, deadline time.Time) (*http.Response, error) {
	mp, err := c.meshPool(ep)
	if err != nil {
		return nil, err
	}
	if fast {
		pool := c.h1
		if mp != nil {
			pool = mp.h1
		}
		return c.roundTripH1(pool, req, ep.Addr, deadline)
	}
	req.URL.Host = ep.Addr
	if mp != nil {
		if mp.transport == nil {
			return nil, errors.New("no mutual TLS transport for this cluster's protocol") // New never builds such a cluster
		}
		return mp.transport.RoundTrip(req)
	}
	return c.Transport.RoundTrip(req)
}

// ownAddresses are this pod's non-loopback addresses. A meshed endpoint at one of them is the
// pod itself (a Service calling back into its own pod): that connection never leaves the pod
// and never passes the inbound capture, so the app itself would receive the TLS handshake.
// It goes in plaintext, as in Istio and Linkerd.
var ownAddresses = sync.OnceValue(func() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() {
			out[p.Addr().Unmap()] = true
		}
	}
	return out
})

// ownAddress says whether hostport names this pod.
func ownAddress(hostport string) bool {
	ap, err := netip.ParseAddrPort(hostport)
	return err == nil && ownAddresses()[ap.Addr().Unmap()]
}
