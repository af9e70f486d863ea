// Package upstream holds the runtime side of a cluster: its endpoints with
// their load and health state, the endpoint picker, the retry budget, and
// the connection pools (one http.Transport per cluster, pooling per endpoint).
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/retry"
	"github.com/knit-mesh/knit/proxy/tlsfiles"
)

// Cluster is immutable after New except for endpoint state, which is atomic.
type Cluster struct {
	Name      string
	Spec      config.Cluster
	Endpoints []*balance.Endpoint
	Picker    balance.Picker
	Outlier   *balance.Outlier
	Budget    *retry.Budget

	// Transport pools HTTP connections per endpoint address.
	Transport *http.Transport
	// FastH1 is set for plaintext HTTP/1.1 clusters, which use RoundTripH1.
	FastH1 bool
	h1     *h1Pool
	dialer *net.Dialer
	tls    *tls.Config
	// mesh opens mutual TLS to meshed endpoints; meshPools pools those connections (nil for
	// TCP clusters, which dial per connection, and without mesh).
	mesh      MeshTLS
	meshPools *meshPools
}

// New builds a cluster. prev, when it has the same spec, lends its transport
// (warm connections) and the state of endpoints that stay. mesh (nil: none) opens mutual TLS
// to the endpoints discovery marks as meshed; a cluster that originates its own TLS (spec.TLS)
// does not use it.
func New(spec config.Cluster, eps []config.Endpoint, prev *Cluster, mesh MeshTLS) (*Cluster, error) {
	c := &Cluster{
		Name:    spec.Name,
		Spec:    spec,
		Picker:  balance.NewPicker(spec.LBPolicy),
		Outlier: balance.NewOutlier(spec.OutlierDetection),
		dialer:  &net.Dialer{Timeout: spec.ConnectTimeout.D(), KeepAlive: 30 * time.Second},
	}
	if spec.TLS == nil {
		c.mesh = mesh
	}
	sameSpec := prev != nil && reflect.DeepEqual(prev.Spec, spec)
	old := map[string]*balance.Endpoint{}
	if sameSpec {
		for _, e := range prev.Endpoints {
			old[e.Addr] = e
		}
		c.Budget = prev.Budget
	} else {
		c.Budget = retry.NewBudget(spec.RetryBudget.Ratio, spec.RetryBudget.MinPerSecond)
	}
	for _, e := range eps {
		id := ""
		if e.Meshed && c.mesh != nil && !ownAddress(e.Address) {
			id = e.Identity
		}
		if o := old[e.Address]; o != nil && o.Weight == e.Weight && o.Identity == id {
			c.Endpoints = append(c.Endpoints, o)
			continue
		}
		ne := balance.NewEndpoint(e.Address, e.Weight)
		ne.Identity = id
		c.Endpoints = append(c.Endpoints, ne)
	}
	if spec.TLS != nil {
		alpn := []string{"http/1.1"}
		if spec.Protocol == config.ClusterHTTP2 {
			alpn = []string{"h2"}
		} else if spec.Protocol == config.ClusterTCP {
			alpn = nil
		}
		cfg, err := tlsfiles.ClientConfig(spec.TLS.CAFile, spec.TLS.CertFile, spec.TLS.KeyFile, spec.TLS.ServerName, alpn)
		if err != nil {
			return nil, fmt.Errorf("cluster %s tls: %w", spec.Name, err)
		}
		c.tls = cfg
	}
	if spec.Protocol == config.ClusterTCP {
		return c, nil
	}
	c.FastH1 = spec.Protocol == config.ClusterHTTP1 && c.tls == nil
	if sameSpec && prev.Transport != nil && (prev.meshPools == nil) == (c.mesh == nil) {
		c.Transport = prev.Transport
		c.tls = prev.tls
		c.h1 = prev.h1
		c.meshPools = prev.meshPools
		return c, nil
	}
	c.Transport = c.newTransport()
	c.h1 = newH1Pool(c.dialer, spec.MaxIdleConnsPerEndpoint, spec.MaxConnectionsPerEndpoint,
		spec.IdleTimeout.D(), spec.MaxResponseHeaderBytes)
	if c.mesh != nil {
		c.meshPools = c.newMeshPools()
	}
	return c, nil
}

// newTransport is tuned for a proxy: large idle pools so keep-alive
// connections are reused under load, no compression, no proxy env lookups.
func (c *Cluster) newTransport() *http.Transport {
	t := &http.Transport{
		DialContext:         c.dialer.DialContext,
		MaxIdleConns:        0, // unlimited; bounded per endpoint below
		MaxIdleConnsPerHost: c.Spec.MaxIdleConnsPerEndpoint,
		MaxConnsPerHost:     c.Spec.MaxConnectionsPerEndpoint,
		IdleConnTimeout:     idleTimeout(c.Spec.IdleTimeout.D()),
		// 0 would mean net/http's 10 MB; an outbound sidecar talks to arbitrary hosts.
		MaxResponseHeaderBytes: int64(max(c.Spec.MaxResponseHeaderBytes, 1)),
		DisableCompression:     true,
		TLSHandshakeTimeout:    c.Spec.ConnectTimeout.D() + 5*time.Second,
		ExpectContinueTimeout:  0,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
		TLSClientConfig:        c.tls,
	}
	var p http.Protocols
	switch {
	case c.Spec.Protocol == config.ClusterHTTP2 && c.tls != nil:
		p.SetHTTP2(true)
	case c.Spec.Protocol == config.ClusterHTTP2:
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP1(true)
	}
	t.Protocols = &p
	t.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: 1 << 20, MaxReceiveBufferPerConnection: 4 << 20,
		MaxDecoderHeaderTableSize: 4096}
	return t
}

// Scheme is the URL scheme for requests to this cluster.
func (c *Cluster) Scheme() string {
	if c.tls != nil {
		return "https"
	}
	return "http"
}

// Pick chooses an endpoint for one attempt; a retry passes the endpoints the request has
// already tried, which are picked again only when no other endpoint is in rotation.
func (c *Cluster) Pick(tried ...*balance.Endpoint) *balance.Endpoint {
	return balance.PickAvoiding(c.Picker, c.Endpoints, tried)
}

// Dial opens an opaque connection to an endpoint: mutual TLS when the endpoint is meshed (the
// bytes inside are the caller's, unchanged), TLS when the cluster originates it.
func (c *Cluster) Dial(ctx context.Context, e *balance.Endpoint) (net.Conn, error) {
	meshed := false
	if e.Identity != "" && c.mesh != nil {
		_, plaintext, err := c.mesh.Use()
		if err != nil {
			return nil, err
		}
		meshed = !plaintext
	}
	if meshed {
		_, tc, err := dialMesh(ctx, c.dialer.DialContext, e.Addr, func(ctx context.Context, conn net.Conn, retry bool) (net.Conn, error) {
			return c.mesh.Client(ctx, conn, e.Identity, retry)
		})
		return tc, err
	}
	conn, err := c.dialer.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return nil, err
	}
	if c.tls == nil {
		return conn, nil
	}
	cfg := c.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(e.Addr)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// Close releases idle pooled connections; in-flight ones finish normally.
func (c *Cluster) Close() {
	if c.Transport != nil {
		c.Transport.CloseIdleConnections()
	}
	if c.h1 != nil {
		c.h1.closeIdle()
	}
	if c.meshPools != nil {
		c.meshPools.closeIdle()
	}
}

func idleTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return 90 * time.Second
	}
	return d
}

// IsHeadersTooLarge reports an upstream response whose header block broke
// the cluster's limit, on either the fast path or http.Transport.
func IsHeadersTooLarge(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrResponseHeadersTooLarge) {
		return true
	}
	// net/http reports these only as text.
	s := err.Error()
	return strings.Contains(s, "server response headers exceeded") ||
		strings.Contains(s, "header list larger than")
}

// IsConnectError tells a failure to reach the endpoint from a later failure. A failed
// mutual TLS handshake with a meshed endpoint is one: the connection never carried a byte.
func IsConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	me := AsMeshError(err)
	return me != nil && me.Endpoint
}
