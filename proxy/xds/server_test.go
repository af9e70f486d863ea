package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	testNode       = "shop/client-7d9f"
	testServerName = "knit-controlplane-r1.knit-system.svc"
)

// controlPlane is go-control-plane's real delta ADS server on a real TLS
// socket, with a token check in front as knit-controlplane has.
type controlPlane struct {
	t     *testing.T
	addr  string
	cache cachev3.SnapshotCache
	srv   *grpc.Server

	mu     sync.Mutex
	tokens []string // bearer tokens presented, per stream
	nodes  []string
	nacks  []string // error_detail messages received
	acks   int
}

// pki is a self-signed serving certificate for testServerName and the
// trust bundle file that holds it.
type pki struct {
	cert   tls.Certificate
	bundle string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: testServerName},
		DNSNames: []string{testServerName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return pki{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, bundle: bundle}
}

// startControlPlane serves on addr ("127.0.0.1:0" for a new port).
func startControlPlane(t *testing.T, p pki, addr string, cache cachev3.SnapshotCache) *controlPlane {
	t.Helper()
	cp := &controlPlane{t: t, cache: cache}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = ln.Addr().String()
	cb := serverv3.CallbackFuncs{
		StreamDeltaRequestFunc: func(_ int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			if req.GetNode() != nil {
				cp.nodes = append(cp.nodes, req.GetNode().GetId())
			}
			switch {
			case req.GetErrorDetail() != nil:
				cp.nacks = append(cp.nacks, req.GetErrorDetail().GetMessage())
			case req.GetResponseNonce() != "":
				cp.acks++
			}
			return nil
		},
	}
	xds := serverv3.NewServer(context.Background(), cache, cb)
	cp.srv = grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&p.cert)),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			md, _ := metadata.FromIncomingContext(ss.Context())
			auth := md.Get("authorization")
			if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") || auth[0] == "Bearer revoked-token" {
				return status.Error(codes.Unauthenticated, "token refused")
			}
			cp.mu.Lock()
			cp.tokens = append(cp.tokens, strings.TrimPrefix(auth[0], "Bearer "))
			cp.mu.Unlock()
			return h(srv, ss)
		}))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(cp.srv, xds)
	go cp.srv.Serve(ln)
	t.Cleanup(cp.srv.Stop)
	return cp
}

func (cp *controlPlane) set(version string, res map[resource.Type][]types.Resource) {
	cp.t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		cp.t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		cp.t.Fatal(err)
	}
}

func (cp *controlPlane) seen() (tokens, nodes, nacks []string, acks int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]string(nil), cp.tokens...), append([]string(nil), cp.nodes...), append([]string(nil), cp.nacks...), cp.acks
}

// Envoy resources as knit-controlplane writes them (CONTRACT.md).

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}},
		ConnectTimeout: durationpb.New(time.Second),
		LbPolicy:       clusterv3.Cluster_LEAST_REQUEST,
	}
}

func assignment(cluster string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := net.LookupPort("tcp", port)
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddr(host, uint32(p))}},
			HealthStatus:   corev3.HealthStatus_HEALTHY,
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"knit": {Fields: map[string]*structpb.Value{
				"meshed": structpb.NewBoolValue(true), "identity": structpb.NewStringValue("spiffe://cluster.local/ns/shop/sa/web"),
				"pod": structpb.NewStringValue("shop/web-1")}}}},
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

func socketAddr(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// httpListener is a Service ClusterIP:port's virtual listener.
func httpListener(t testing.TB, vip string, port uint32, routeName, cluster string) *listenerv3.Listener {
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: routeName,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: routeName, ConfigSource: ads}},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}}}
	tcp := &tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}}
	return &listenerv3.Listener{
		Name: net.JoinHostPort(vip, "80"), Address: socketAddr(vip, port), BindToPort: wrapperspb.Bool(false),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			FilterChainMatch: &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"http/1.1", "h2c"}},
			Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}},
		}},
		DefaultFilterChain: &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, tcp)}}}},
	}
}

func routeTo(name string, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

// waitFor polls cond (events, not timing: the deadline only ends a hung test).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeToken(t *testing.T, path, tok string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}
