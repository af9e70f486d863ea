/*
Copyright 2026 The knit Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// Port is the xDS server's port in the contract.
const Port = 15010

// Limits of the xDS gRPC server.
const (
	// MaxRecvMessageSize bounds a proxy's request (subscriptions, ACK/NACK with error detail).
	MaxRecvMessageSize = 1 << 20
	// MaxSendMessageSize bounds one response; proxies accept at least this much (CONTRACT.md).
	MaxSendMessageSize = 16 << 20
	// MaxConcurrentStreams per connection: a proxy needs one ADS stream.
	MaxConcurrentStreams = 16
	handshakeTimeout     = 10 * time.Second
)

// Options configure the xDS server.
type Options struct {
	// Address to listen on, e.g. ":15010"; ignored when Listener is set.
	Address  string
	Listener net.Listener
	// TLS is the server's TLS configuration (the revision's serving certificate).
	TLS *tls.Config
	// Authenticator checks the proxies' tokens.
	Authenticator Authenticator
	// Reader reads Services, EndpointSlices, Pods and routes, normally the informer cache of
	// NewCache; Informers is the same cache, to be told of changes.
	Reader    client.Reader
	Informers Informers
	// StatusWriter writes route status; nil leaves route status alone.
	StatusWriter client.Client
	TrustDomain  string
	// Debounce is how long the server waits after a change for more before translating.
	Debounce time.Duration
	// Report, when set, makes the server report its proxies into its MeshRevision's status
	// (report.go); nil reports nothing.
	Report   *ReportOptions
	Registry prometheus.Registerer
	Log      logr.Logger
}

// Server is the delta ADS server of one revision's control plane.
type Server struct {
	o       Options
	metrics *metrics
	pub     *publisher
	cb      *callbacks
	builder *builder
	tracker *tracker
}

// New checks the options and registers the server's metrics.
func New(o Options) (*Server, error) {
	if o.TLS == nil || o.Authenticator == nil || o.Reader == nil || o.Informers == nil {
		return nil, errors.New("xds: TLS, Authenticator, Reader and Informers are required")
	}
	if o.Debounce == 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	m, err := newMetrics(o.Registry)
	if err != nil {
		return nil, fmt.Errorf("registering xDS metrics: %w", err)
	}
	pub := newPublisher(o.Log)
	s := &Server{
		o:       o,
		metrics: m,
		pub:     pub,
		cb:      &callbacks{log: o.Log, metrics: m, pub: pub, streams: map[int64]*streamState{}},
		tracker: newTracker(),
	}
	for _, c := range s.tracker.gauges() {
		if err := o.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("registering xDS metrics: %w", err)
		}
	}
	if r := o.Report; r != nil {
		if r.Client == nil || r.Revision == "" || r.Pod == "" {
			return nil, errors.New("xds: a report needs a Client, the Revision and the Pod")
		}
		if r.MinInterval <= 0 {
			r.MinInterval = 5 * time.Second
		}
		if r.Heartbeat <= 0 {
			r.Heartbeat = meshv1.ControlPlaneReportHeartbeat
		}
	}
	s.builder = &builder{
		log: o.Log, reader: o.Reader, informers: o.Informers, status: o.StatusWriter,
		trustDomain: o.TrustDomain, debounce: o.Debounce, pub: pub, metrics: m,
		trigger: make(chan struct{}, 1),
	}
	return s, nil
}

// LastNACK is the last configuration any proxy refused, or nil.
func (s *Server) LastNACK() *NACK {
	s.cb.mu.Lock()
	defer s.cb.mu.Unlock()
	if s.cb.lastNACK == nil {
		return nil
	}
	n := *s.cb.lastNACK
	return &n
}

// Start serves until ctx ends: it watches the informers, translates on changes (debounced),
// writes route status and answers proxies.
func (s *Server) Start(ctx context.Context) error {
	lis := s.o.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", s.o.Address); err != nil {
			return fmt.Errorf("xds: listening on %s: %w", s.o.Address, err)
		}
	}
	if err := s.builder.watch(ctx); err != nil {
		lis.Close()
		return err
	}
	go s.builder.run(ctx)
	reported := make(chan struct{})
	if s.o.Report != nil {
		r := &reporter{o: *s.o.Report, log: s.o.Log, tracker: s.tracker}
		go func() { r.run(ctx); close(reported) }()
	} else {
		close(reported)
	}

	tlsConfig := s.o.TLS.Clone()
	tlsConfig.MinVersion = tls.VersionTLS12
	tlsConfig.NextProtos = []string{"h2"}
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.MaxRecvMsgSize(MaxRecvMessageSize),
		grpc.MaxSendMsgSize(MaxSendMessageSize),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.StreamInterceptor(s.authenticate),
		grpc.UnaryInterceptor(func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
			return nil, status.Error(codes.Unimplemented, "knit serves delta ADS only")
		}),
	)
	// The tracker sees a stream only after s.cb checked its node.id.
	callbacks := chainCallbacks{s.cb, s.tracker}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, &ads{delta: serverv3.NewServer(ctx, s.pub.cache, callbacks)})

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	s.o.Log.Info("serving xDS", "address", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("xds: %w", err)
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			g.Stop()
		}
		<-reported // the pod's report is removed (or gave up) before the process may exit
		return nil
	}
}

// authenticate checks the bearer token of every stream before any handler runs.
func (s *Server) authenticate(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	token, err := bearerToken(ss.Context())
	if err == nil {
		var id Identity
		if id, err = s.o.Authenticator.Authenticate(ss.Context(), token); err == nil {
			return handler(srv, &identifiedStream{ServerStream: ss, ctx: withIdentity(ss.Context(), id)})
		}
	}
	s.metrics.refused.WithLabelValues(status.Code(err).String()).Inc()
	s.o.Log.Info("refused an xDS stream", "method", info.FullMethod, "reason", describe(err))
	return err
}

type identifiedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identifiedStream) Context() context.Context { return s.ctx }

// ads exposes only delta ADS: state-of-the-world would resend every endpoint on each change.
type ads struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	delta serverv3.Server
}

func (a *ads) StreamAggregatedResources(discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return status.Error(codes.Unimplemented, "knit serves delta ADS only (DeltaAggregatedResources)")
}

func (a *ads) DeltaAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.DeltaAggregatedResources(stream)
}
