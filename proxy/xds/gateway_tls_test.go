package xds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testPair is a self-signed P-256 certificate and its key, as PEM.
func testPair(t *testing.T) (chain, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gateway.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

func tlsChainFor(t *testing.T, name string, serverNames []string, chain, key string, minVersion tlsv3.TlsParameters_TlsProtocol, alpn ...string) *listenerv3.FilterChain {
	t.Helper()
	router, _ := anypb.New(&routerv3.Router{})
	hcm, _ := anypb.New(&hcmv3.HttpConnectionManager{StatPrefix: "gw",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "gateway/infra/edge/443",
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}}})
	ts, _ := anypb.New(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: minVersion},
		AlpnProtocols: alpn,
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: chain}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: key}},
		}},
	}})
	fc := &listenerv3.FilterChain{Name: name,
		TransportSocket: &corev3.TransportSocket{Name: tlsTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ts}},
		Filters:         []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}}}
	if serverNames != nil {
		fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: serverNames}
	}
	return fc
}

func gatewayListener(chains ...*listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{Name: "gateway_443", BindToPort: wrapperspb.Bool(true), TrafficDirection: corev3.TrafficDirection_INBOUND,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 443}}}},
		FilterChains: chains}
}

// A gateway's TLS listener is refused, naming the field, when it asks for less than TLS 1.2,
// carries a key that does not parse, offers a protocol other than h2 and http/1.1, or mixes
// plaintext and TLS chains.
func TestGatewayTLSListenerRefusals(t *testing.T) {
	cert, key := testPair(t)
	bad := "-----BEGIN EC PRIVATE KEY-----\nnot a key\n-----END EC PRIVATE KEY-----\n"
	plain := proto.Clone(tlsChainFor(t, "plain", nil, cert, key, tlsv3.TlsParameters_TLSv1_2)).(*listenerv3.FilterChain)
	plain.TransportSocket = nil
	for _, tc := range []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"TLS 1.0", gatewayListener(tlsChainFor(t, "a", nil, cert, key, tlsv3.TlsParameters_TLSv1_0)), "tls_minimum_protocol_version"},
		{"a key that does not parse", gatewayListener(tlsChainFor(t, "a", nil, cert, bad, tlsv3.TlsParameters_TLSv1_2)), "tls_certificates[0]"},
		{"an unknown ALPN protocol", gatewayListener(tlsChainFor(t, "a", nil, cert, key, tlsv3.TlsParameters_TLSv1_2, "spdy/3")), "alpn_protocols[0]"},
		{"plaintext beside TLS", gatewayListener(tlsChainFor(t, "a", []string{"a.test"}, cert, key, tlsv3.TlsParameters_TLSv1_2), plain), "either every filter chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := translateGatewayListener(gatewayListener(tlsChainFor(t, "ok", nil, cert, key, tlsv3.TlsParameters_TLSv1_2, "h2"))); err != nil {
				t.Fatalf("a valid TLS listener is refused: %v", err)
			}
			_, err := translateGatewayListener(tc.l)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}
