// Package xds is knit-proxy's xDS client: one delta ADS stream to the
// revision's control plane (TLS verified against the mesh's trust bundle,
// the pod's projected ServiceAccount token as bearer), whose Envoy
// resources it translates into a config.Bootstrap and applies whole with
// the proxy's reload semantics. What it reads is controlplane/xds/CONTRACT.md;
// a response with anything else is NACKed naming the field, and the last
// accepted config keeps serving, as it does while the control plane is away.
package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/knit-mesh/knit/proxy/config"
)

// Defaults for Options left zero.
const (
	DefaultMaxMessageBytes = 16 << 20
	DefaultBackoffBase     = 500 * time.Millisecond
	DefaultBackoffMax      = 30 * time.Second
	DefaultStreamLifetime  = 30 * time.Minute
	DefaultConnectTimeout  = 10 * time.Second
	// maxTokenBytes bounds the token file read on each connect.
	maxTokenBytes = 64 << 10
	// maxErrorDetail bounds a NACK's message.
	maxErrorDetail = 4 << 10
)

// Options say where the control plane is and who this proxy is.
type Options struct {
	// Address is the control plane's host:port (KNIT_CONTROL_PLANE).
	Address string
	// ServerName is the name its certificate must carry (default: Address's host).
	ServerName string
	// TrustBundle is the PEM file of CAs that sign the control plane's
	// certificate (KNIT_TRUST_BUNDLE); re-read on every connect, so a rotated
	// bundle is used without a restart.
	TrustBundle string
	// TokenFile holds the bearer token (KNIT_TOKEN_FILE), re-read on every
	// connect: the kubelet rotates projected tokens.
	TokenFile string
	// NodeID is "<namespace>/<pod>"; Metadata goes into node.metadata.
	NodeID   string
	Metadata map[string]string
	// MaxMessageBytes bounds one received response.
	MaxMessageBytes int
	// BackoffBase and BackoffMax bound the jittered exponential reconnect delay.
	BackoffBase, BackoffMax time.Duration
	// StreamLifetime ends a healthy stream after about this long (±10%) and
	// opens a new one: the token is checked again and load spreads over
	// control-plane replicas.
	StreamLifetime time.Duration
	// ConnectTimeout bounds connecting and the TLS handshake.
	ConnectTimeout time.Duration
	// Gateway makes the proxy bind the Listeners that ask for it (a gateway's), see
	// TranslateGateway; a sidecar refuses them.
	Gateway bool
	// OnResponse, when set, is told the outcome of every response: nil
	// for an ACK, the NACK's error otherwise (for metrics).
	OnResponse func(typeURL string, err error)
}

func (o *Options) setDefaults() {
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.StreamLifetime == 0 {
		o.StreamLifetime = DefaultStreamLifetime
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.ServerName == "" {
		o.ServerName = o.Address
		if i := strings.LastIndexByte(o.Address, ':'); i >= 0 {
			o.ServerName = o.Address[:i]
		}
	}
}

// ApplyFunc makes a translated config the running one; an error NACKs it.
type ApplyFunc func(context.Context, *config.Bootstrap) error

// Client keeps one proxy in step with the control plane.
type Client struct {
	opts  Options
	base  *config.Bootstrap
	apply ApplyFunc
	log   logr.Logger

	// Counters, for metrics and tests.
	Acks, Nacks, Connects atomic.Int64

	mu       sync.Mutex
	accepted *Resources                   // the last accepted view
	versions map[string]map[string]string // type → name → version, for reconnects
	seen     map[string]bool              // types with an accepted response
	lastErr  string                       // the last NACK's message
	synced   chan struct{}                // closed once all four types are in
}

// New returns a client that serves base plus what the control plane sends.
func New(opts Options, base *config.Bootstrap, apply ApplyFunc, log logr.Logger) (*Client, error) {
	if opts.Address == "" || opts.NodeID == "" {
		return nil, errors.New("xds: the control plane address and the node id are required")
	}
	opts.setDefaults()
	return &Client{opts: opts, base: base, apply: apply, log: log.WithName("xds"), accepted: NewResources(),
		versions: map[string]map[string]string{}, seen: map[string]bool{}, synced: make(chan struct{})}, nil
}

// Synced is closed once a response of each resource type has been accepted.
func (c *Client) Synced() <-chan struct{} { return c.synced }

// HasConfig reports whether the first full config has been applied.
func (c *Client) HasConfig() bool {
	select {
	case <-c.synced:
		return true
	default:
		return false
	}
}

// LastNack is the error of the last refused response, "" if none.
func (c *Client) LastNack() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Run keeps a stream open until ctx ends, reconnecting with jittered
// exponential backoff. The proxy keeps serving its last accepted config
// meanwhile.
func (c *Client) Run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		got, err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if got {
			failures = 0 // the stream worked: start the backoff over
		}
		delay := backoff(failures, c.opts.BackoffBase, c.opts.BackoffMax)
		failures++
		c.log.Info("control plane stream ended; keeping the last accepted config and reconnecting",
			"address", c.opts.Address, "error", errString(err), "retryIn", delay.Round(time.Millisecond).String())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is exponential with full jitter: uniform in [base/2, min(max, base·2^n)].
func backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// stream runs one connection and stream; got reports whether any response
// arrived (the connection and authentication worked).
func (c *Client) stream(ctx context.Context) (got bool, err error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return false, err
	}
	conn, err := grpc.NewClient("passthrough:///"+c.opts.Address,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(tokenCredentials{file: c.opts.TokenFile}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.opts.MaxMessageBytes)),
		// Pings find a control plane that vanished without closing the connection.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		// One attempt per stream: the reconnect loop below owns the backoff.
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: c.opts.ConnectTimeout,
			Backoff: grpcbackoff.Config{BaseDelay: c.opts.BackoffBase, Multiplier: 2, Jitter: 0.2, MaxDelay: c.opts.BackoffMax}}),
	)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", c.opts.Address, err)
	}
	defer conn.Close()
	c.Connects.Add(1)

	lifetime := c.opts.StreamLifetime
	lifetime += time.Duration(rand.Int64N(int64(lifetime)/5+1)) - lifetime/10
	sctx, cancel := context.WithTimeout(ctx, lifetime)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	if err := c.subscribe(st); err != nil {
		return false, err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
				return true, errors.New("stream lifetime reached")
			}
			return got, err
		}
		got = true
		if err := st.Send(c.handle(ctx, resp)); err != nil {
			return got, fmt.Errorf("send ack: %w", err)
		}
	}
}

func (c *Client) tlsConfig() (*tls.Config, error) {
	pem, err := os.ReadFile(c.opts.TrustBundle)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("trust bundle %s: no PEM certificate in it", c.opts.TrustBundle)
	}
	return &tls.Config{RootCAs: pool, ServerName: c.opts.ServerName, MinVersion: tls.VersionTLS12}, nil
}

// subscribe sends the wildcard subscriptions in the contract's order, with
// the versions already held so a reconnect does not resend everything.
func (c *Client) subscribe(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) error {
	md := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range c.opts.Metadata {
		md.Fields[k] = structpb.NewStringValue(v)
	}
	node := &corev3.Node{Id: c.opts.NodeID, Metadata: md, UserAgentName: "knit-proxy"}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, typeURL := range subscriptionOrder {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, InitialResourceVersions: copyMap(c.versions[typeURL])}
		if i == 0 {
			req.Node = node
		}
		if err := st.Send(req); err != nil {
			return fmt.Errorf("subscribe to %s: %w", shortType(typeURL), err)
		}
	}
	return nil
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// handle applies one response and returns its ACK or NACK.
func (c *Client) handle(ctx context.Context, resp *discoveryv3.DeltaDiscoveryResponse) *discoveryv3.DeltaDiscoveryRequest {
	typeURL := resp.GetTypeUrl()
	reply := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce()}
	c.mu.Lock()
	defer c.mu.Unlock()
	versions, err := c.applyResponse(ctx, resp)
	if c.opts.OnResponse != nil {
		c.opts.OnResponse(typeURL, err)
	}
	if err != nil {
		c.Nacks.Add(1)
		msg := err.Error()
		if len(msg) > maxErrorDetail {
			msg = msg[:maxErrorDetail] + "…"
		}
		c.lastErr = msg
		c.log.Error(err, "refused a config from the control plane (NACK); keeping the last accepted config",
			"type", shortType(typeURL), "nonce", resp.GetNonce())
		reply.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: msg}
		return reply
	}
	c.Acks.Add(1)
	c.versions[typeURL] = versions
	c.seen[typeURL] = true
	c.log.V(1).Info("applied a config from the control plane", "type", shortType(typeURL),
		"resources", len(resp.GetResources()), "removed", len(resp.GetRemovedResources()), "nonce", resp.GetNonce())
	if !c.HasConfig() && len(c.seen) == len(subscriptionOrder) {
		close(c.synced)
		c.log.Info("first configuration from the control plane applied", "address", c.opts.Address)
	}
	return reply
}

// applyResponse stages the response over the accepted view, translates and
// applies it; on any error nothing of it is kept.
func (c *Client) applyResponse(ctx context.Context, resp *discoveryv3.DeltaDiscoveryResponse) (map[string]string, error) {
	typeURL := resp.GetTypeUrl()
	staged := c.accepted.Clone()
	versions := copyMap(c.versions[typeURL])
	if versions == nil {
		versions = map[string]string{}
	}
	put, del, err := staged.mutators(typeURL)
	if err != nil {
		return nil, err
	}
	for i, r := range resp.GetResources() {
		msg, name, err := Decode(typeURL, r.GetResource())
		if err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		if r.GetName() != "" && r.GetName() != name {
			return nil, fmt.Errorf("resources[%d].name: %q differs from the resource's own name %q", i, r.GetName(), name)
		}
		put(name, msg)
		versions[name] = r.GetVersion()
	}
	for _, name := range resp.GetRemovedResources() {
		del(name)
		delete(versions, name)
	}
	translate := Translate
	if c.opts.Gateway {
		translate = TranslateGateway
	}
	cfg, err := translate(c.base, staged)
	if err != nil {
		return nil, err
	}
	if err := c.apply(ctx, cfg); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	c.accepted = staged
	return versions, nil
}

// mutators returns the put and delete functions of one type's map.
func (r *Resources) mutators(typeURL string) (func(string, proto.Message), func(string), error) {
	switch typeURL {
	case ClusterType:
		return func(n string, m proto.Message) { r.Clusters[n] = m.(*clusterv3.Cluster) }, func(n string) { delete(r.Clusters, n) }, nil
	case EndpointType:
		return func(n string, m proto.Message) { r.Endpoints[n] = m.(*endpointv3.ClusterLoadAssignment) }, func(n string) { delete(r.Endpoints, n) }, nil
	case ListenerType:
		return func(n string, m proto.Message) { r.Listeners[n] = m.(*listenerv3.Listener) }, func(n string) { delete(r.Listeners, n) }, nil
	case RouteType:
		return func(n string, m proto.Message) { r.Routes[n] = m.(*routev3.RouteConfiguration) }, func(n string) { delete(r.Routes, n) }, nil
	}
	return nil, nil, fmt.Errorf("type_url: %q is not one knit-proxy subscribed to", typeURL)
}

// tokenCredentials sends the projected ServiceAccount token as a bearer
// token, read from its file for every stream (the kubelet rotates it).
type tokenCredentials struct{ file string }

func (t tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	f, err := os.Open(t.file)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if len(b) > maxTokenBytes {
		return nil, fmt.Errorf("token %s: larger than %d bytes", t.file, maxTokenBytes)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("token %s: empty", t.file)
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (tokenCredentials) RequireTransportSecurity() bool { return true }
