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

package identity

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	securityapi "istio.io/api/security/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HeaderRenewBefore is the response header that tells a knit proxy how long before expiry to
// renew (trust.workloadCertRenewBefore), so a change of the Mesh reaches proxies at their next
// renewal without a restart. Other clients ignore it.
const HeaderRenewBefore = "knit-renew-before"

// Config is what the server needs from the mesh and the cluster.
type Config struct {
	TrustDomain string
	// Audience a workload token must be for (the injector's projected token).
	Audience string
	// Namespace the CertificateRequests are created in: the control plane's, where a namespaced
	// Issuer lives.
	Namespace string
	Issuer    cmmeta.IssuerReference
	// Duration and RenewBefore of workload certificates (trust.workloadCertDuration, ...RenewBefore).
	Duration, RenewBefore time.Duration
	// Approve makes knit approve the CertificateRequests it created and validated. Off when
	// another approver (approver-policy) decides.
	Approve bool
	// Client creates TokenReviews and CertificateRequests; APIReader reads pods uncached, so a
	// pod deleted a moment ago is never taken as alive.
	Client    client.Client
	APIReader client.Reader
	// TrustBundle returns the PEM roots proxies should trust now.
	TrustBundle func(ctx context.Context) ([]byte, error)
	Limits      Limits
	Log         logr.Logger
}

// Limits bound what one request and the server as a whole may cost.
type Limits struct {
	// MaxRequestBytes bounds a request message; bigger ones are refused before being decoded.
	MaxRequestBytes int
	// MaxConcurrent requests are served at once; more are refused (the client backs off).
	MaxConcurrent int
	// PerPodInterval and PerPodBurst: each pod may ask PerPodBurst times at once, then once per
	// interval.
	PerPodInterval time.Duration
	PerPodBurst    int
	// Timeout is each request's deadline, issuance included.
	Timeout time.Duration
	// MaxTokenLifetime refuses tokens that live longer (the injector mounts 1 h tokens).
	MaxTokenLifetime time.Duration
}

// DefaultLimits suit a cluster of thousands of pods renewing daily.
func DefaultLimits() Limits {
	return Limits{MaxRequestBytes: 64 << 10, MaxConcurrent: 64, PerPodInterval: 10 * time.Second, PerPodBurst: 5,
		Timeout: 30 * time.Second, MaxTokenLifetime: time.Hour}
}

// hardMaxRequestBytes is what gRPC reads of a message at most; larger ones are refused by gRPC
// itself before the service sees them.
const hardMaxRequestBytes = 4 << 20

// Server is the identity service.
type Server struct {
	securityapi.UnimplementedIstioCertificateServiceServer
	cfg     Config
	slots   chan struct{}
	perPod  *podLimiter
	metrics *Metrics
	now     func() time.Time
}

// New returns a server; metrics go to reg.
func New(cfg Config, reg prometheus.Registerer) (*Server, error) {
	switch {
	case cfg.TrustDomain == "" || cfg.Audience == "" || cfg.Namespace == "" || cfg.Issuer.Name == "":
		return nil, errors.New("identity: trust domain, audience, namespace and issuer are required")
	case cfg.Duration <= 0 || cfg.RenewBefore <= 0 || cfg.RenewBefore >= cfg.Duration:
		return nil, fmt.Errorf("identity: renew-before %s must be positive and shorter than duration %s", cfg.RenewBefore, cfg.Duration)
	case cfg.Client == nil || cfg.APIReader == nil || cfg.TrustBundle == nil:
		return nil, errors.New("identity: client, API reader and trust bundle are required")
	}
	l := cfg.Limits
	if l.MaxRequestBytes <= 0 || l.MaxConcurrent <= 0 || l.PerPodInterval <= 0 || l.PerPodBurst <= 0 || l.Timeout <= 0 || l.MaxTokenLifetime <= 0 {
		return nil, fmt.Errorf("identity: every limit must be positive: %+v", l)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, slots: make(chan struct{}, l.MaxConcurrent), perPod: newPodLimiter(l.PerPodInterval, l.PerPodBurst),
		metrics: m, now: time.Now}, nil
}

// NewGRPCServer is a gRPC server over TLS with the serving certificate getCertificate returns
// (certwatcher's, reloaded on rotation), with the size, header and idle limits of limits.
func NewGRPCServer(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error), limits Limits) *grpc.Server {
	creds := credentials.NewTLS(&tls.Config{GetCertificate: getCertificate, MinVersion: tls.VersionTLS12})
	return grpc.NewServer(
		grpc.Creds(creds),
		// gRPC's own cap only bounds memory; the service refuses above MaxRequestBytes itself,
		// so the client learns the reason and the refusal is counted.
		grpc.MaxRecvMsgSize(max(hardMaxRequestBytes, limits.MaxRequestBytes)),
		grpc.MaxSendMsgSize(1<<20),
		grpc.MaxHeaderListSize(16<<10),
		grpc.MaxConcurrentStreams(uint32(limits.MaxConcurrent)),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	)
}

// Register adds the service to g under Istio's name. Its handler counts requests refused while
// being decoded (too large, not protobuf) like every other refusal.
func (s *Server) Register(g *grpc.Server) {
	desc := securityapi.IstioCertificateService_ServiceDesc
	desc.Methods = []grpc.MethodDesc{{MethodName: "CreateCertificate", Handler: s.handle}}
	g.RegisterService(&desc, s)
}

func (s *Server) handle(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	release, err := s.acquire()
	if err != nil {
		return nil, s.finish(ctx, time.Now(), err)
	}
	defer release()
	start := time.Now()
	req := new(securityapi.IstioCertificateRequest)
	if err := dec(req); err != nil {
		return nil, s.finish(ctx, start, decodeRefusal(err))
	}
	if n := proto.Size(req); n > s.cfg.Limits.MaxRequestBytes {
		return nil, s.finish(ctx, start, refuse(ReasonTooLarge, codes.ResourceExhausted,
			"the request is %d bytes, more than %d", n, s.cfg.Limits.MaxRequestBytes))
	}
	resp, err := s.create(ctx, req)
	return resp, s.finish(ctx, start, err)
}

// CreateCertificate serves one request (the gRPC handler decodes it first).
func (s *Server) CreateCertificate(ctx context.Context, req *securityapi.IstioCertificateRequest) (*securityapi.IstioCertificateResponse, error) {
	release, err := s.acquire()
	if err != nil {
		return nil, s.finish(ctx, time.Now(), err)
	}
	defer release()
	start := time.Now()
	resp, err := s.create(ctx, req)
	return resp, s.finish(ctx, start, err)
}

func (s *Server) acquire() (func(), error) {
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	default:
		return nil, refuse(ReasonOverloaded, codes.ResourceExhausted, "%d requests are being served; retry with backoff", cap(s.slots))
	}
}

func decodeRefusal(err error) error {
	if status.Code(err) == codes.ResourceExhausted {
		return refuse(ReasonTooLarge, codes.ResourceExhausted, "the request is larger than %s", strings.TrimSpace(status.Convert(err).Message()))
	}
	return refuse(ReasonMalformedCSR, codes.InvalidArgument, "the request is not an IstioCertificateRequest: %v", status.Convert(err).Message())
}

// create authenticates, validates, issues and answers; every error it returns is a refusal.
func (s *Server) create(ctx context.Context, req *securityapi.IstioCertificateRequest) (*securityapi.IstioCertificateResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Limits.Timeout)
	defer cancel()
	// The CSR's own checks cost no API call, so they come first.
	csr, der, err := parseCSR(req.GetCsr())
	if err != nil {
		return nil, err
	}
	token, err := bearerToken(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.authenticate(ctx, token)
	if err != nil {
		return nil, err
	}
	if !s.perPod.allow(w.PodUID, s.now()) {
		return nil, refuse(ReasonRateLimited, codes.ResourceExhausted, "pod %s/%s asked more than %d times in %s; retry later",
			w.Namespace, w.Pod, s.cfg.Limits.PerPodBurst, time.Duration(s.cfg.Limits.PerPodBurst)*s.cfg.Limits.PerPodInterval)
	}
	id := SPIFFEID(s.cfg.TrustDomain, w.Namespace, w.ServiceAccount)
	if err := checkIdentity(csr, id); err != nil {
		return nil, err
	}
	signed, err := s.issue(ctx, w, id, der)
	if err != nil {
		return nil, err
	}
	chain, err := checkIssued(signed, csr, id)
	if err != nil {
		return nil, err
	}
	bundle, err := s.cfg.TrustBundle(ctx)
	if err != nil || len(bundle) == 0 {
		return nil, refuse(ReasonTrustBundle, codes.Unavailable, "reading the trust bundle: %v", err)
	}
	resp := &securityapi.IstioCertificateResponse{}
	for _, c := range chain {
		resp.CertChain = append(resp.CertChain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	// Istio's convention: the last element is the root; knit's holds every trusted root.
	resp.CertChain = append(resp.CertChain, string(bundle))
	_ = grpc.SetHeader(ctx, metadata.Pairs(HeaderRenewBefore, s.cfg.RenewBefore.String()))
	s.cfg.Log.Info("issued workload certificate", "identity", id, "pod", w.Namespace+"/"+w.Pod, "notAfter", chain[0].NotAfter)
	return resp, nil
}

// bearerToken reads "authorization: Bearer <token>", as Istio's agent sends it.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) != 1 {
		return "", refuse(ReasonNoToken, codes.Unauthenticated, "send exactly one authorization: Bearer <ServiceAccount token> header (got %d)", len(values))
	}
	token, ok := strings.CutPrefix(values[0], "Bearer ")
	if !ok || token == "" {
		return "", refuse(ReasonNoToken, codes.Unauthenticated, "the authorization header is not Bearer <token>")
	}
	return token, nil
}

// finish counts and logs the outcome and turns any error into a refusal's status.
func (s *Server) finish(ctx context.Context, start time.Time, err error) error {
	if err == nil {
		s.metrics.issued.Inc()
		s.metrics.latency.Observe(time.Since(start).Seconds())
		return nil
	}
	reason := ReasonOf(err)
	if reason == "" {
		err, reason = refuse(ReasonAPIUnavailable, codes.Internal, "%v", err), ReasonAPIUnavailable
	}
	s.metrics.refused.WithLabelValues(string(reason)).Inc()
	s.cfg.Log.Info("refused a certificate request", "reason", reason, "error", err.Error())
	return err
}
