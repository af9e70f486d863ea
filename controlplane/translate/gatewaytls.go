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

package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// TLSTransportSocket is the name of Envoy's TLS transport socket.
const TLSTransportSocket = "envoy.transport_sockets.tls"

// GatewayALPN is what a gateway's HTTPS listeners offer: HTTP/2, then HTTP/1.1.
var GatewayALPN = []string{"h2", "http/1.1"}

// gatewayTLSChains are the filter chains of an HTTPS port: one per listener, matched by the
// client's server name (SNI: the listener's hostname, none for a listener without one, which
// takes every other name), terminating TLS 1.2 or later with the listener's certificates
// inline, then HTTP through hcm. The certificates go only into this Gateway's snapshot, which
// only its own proxies may read (checkGateway in controlplane/xds).
func gatewayTLSChains(chains []tlsChain, hcm *anypb.Any) ([]*listenerv3.FilterChain, error) {
	out := make([]*listenerv3.FilterChain, 0, len(chains))
	for _, c := range chains {
		ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			AlpnProtocols: GatewayALPN,
		}}
		for _, cert := range c.certs {
			ctx.CommonTlsContext.TlsCertificates = append(ctx.CommonTlsContext.TlsCertificates, &tlsv3.TlsCertificate{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: cert.chain}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: cert.key}},
			})
		}
		ts, err := anypb.New(ctx)
		if err != nil {
			return nil, err
		}
		fc := &listenerv3.FilterChain{
			Name:            "https/" + c.listener,
			TransportSocket: &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ts}},
			Filters:         []*listenerv3.Filter{{Name: HTTPConnectionManagerFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		}
		if c.hostname != "" {
			fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{c.hostname}}
		}
		out = append(out, fc)
	}
	return out, nil
}
