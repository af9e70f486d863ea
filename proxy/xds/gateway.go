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
	"crypto/tls"
	"errors"
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/knit-mesh/knit/proxy/config"
)

// bindsPort says whether an xDS Listener asks to be bound (bind_to_port unset or true): a
// gateway's listeners, which a gateway proxy serves as real listeners. A sidecar refuses them.
func bindsPort(l *listenerv3.Listener) bool {
	b := l.GetBindToPort()
	return b == nil || b.GetValue()
}

// translateGatewayListener turns a bound Listener into one of the proxy's own listeners, HTTP
// through one HttpConnectionManager whose routes come from RDS: either one plaintext filter
// chain, or (an HTTPS port) one TLS-terminating chain per set of server names, all with the same
// route configuration, whose certificates are chosen by the client's server name.
func translateGatewayListener(l *listenerv3.Listener) (config.Listener, error) {
	out := config.Listener{Name: l.GetName(), Direction: config.Inbound, Protocol: config.ListenerHTTP}
	if l.GetName() == "" {
		return out, errors.New("name: is required")
	}
	addr, err := socketAddress(l.GetAddress(), "address")
	if err != nil {
		return out, err
	}
	out.Address = addr
	if d := l.GetTrafficDirection(); d != corev3.TrafficDirection_INBOUND && d != corev3.TrafficDirection_UNSPECIFIED {
		return out, fmt.Errorf("traffic_direction: %s is not read; a gateway's listeners are INBOUND", d)
	}
	if l.GetDefaultFilterChain() != nil {
		return out, errors.New("default_filter_chain: a gateway listener serves HTTP only")
	}
	chains := l.GetFilterChains()
	if len(chains) == 0 {
		return out, errors.New("filter_chains: a gateway listener has at least one (HTTP) filter chain")
	}
	tlsChains := chains[0].GetTransportSocket() != nil
	if !tlsChains && len(chains) != 1 {
		return out, fmt.Errorf("filter_chains: a plaintext gateway listener has exactly one filter chain, got %d", len(chains))
	}
	if tlsChains {
		out.TLS = &config.ServerTLS{}
	}
	for i, fc := range chains {
		f := fmt.Sprintf("filter_chains[%d]", i)
		if (fc.GetTransportSocket() != nil) != tlsChains {
			return out, fmt.Errorf("%s.transport_socket: either every filter chain of a gateway listener terminates TLS or none does", f)
		}
		if m := fc.GetFilterChainMatch(); m != nil && (!tlsChains || len(m.GetApplicationProtocols()) > 0) {
			return out, fmt.Errorf("%s.filter_chain_match: only server_names is read on a gateway listener, and only with TLS", f)
		}
		filter, err := onlyFilter(fc, f)
		if err != nil {
			return out, err
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := unpack(filter.GetTypedConfig(), hcm, f+".filters[0].typed_config"); err != nil {
			return out, err
		}
		rc, err := readHCM(hcm, f+".filters[0].typed_config")
		if err != nil {
			return out, err
		}
		if i > 0 && rc != out.RouteConfig {
			return out, fmt.Errorf("%s.filters[0].typed_config.rds.route_config_name: %q; every chain of a gateway listener reads the same, %q", f, rc, out.RouteConfig)
		}
		out.RouteConfig = rc
		if !tlsChains {
			continue
		}
		sni, alpn, err := readDownstreamTLS(fc, f)
		if err != nil {
			return out, err
		}
		if i > 0 && !slices.Equal(alpn, out.TLS.ALPN) {
			return out, fmt.Errorf("%s.transport_socket: alpn_protocols differ from filter_chains[0]'s; a listener offers one set", f)
		}
		out.TLS.ALPN = alpn
		out.TLS.SNI = append(out.TLS.SNI, sni)
	}
	return out, nil
}

// readDownstreamTLS reads a filter chain's TLS termination: the server names it matches, its
// certificates (inline PEM) and ALPN protocols (h2 and http/1.1 only). TLS 1.2 or later is
// always required; tls_minimum_protocol_version may say so, not less.
func readDownstreamTLS(fc *listenerv3.FilterChain, f string) (config.SNICertificates, []string, error) {
	out := config.SNICertificates{Name: fc.GetName(), ServerNames: fc.GetFilterChainMatch().GetServerNames()}
	if out.Name == "" {
		out.Name = f
	}
	ts := fc.GetTransportSocket()
	f += ".transport_socket"
	if ts.GetName() != tlsTransportSocket {
		return out, nil, fmt.Errorf("%s.name: %q is not read; want %s", f, ts.GetName(), tlsTransportSocket)
	}
	dtc := &tlsv3.DownstreamTlsContext{}
	if err := unpack(ts.GetTypedConfig(), dtc, f+".typed_config"); err != nil {
		return out, nil, err
	}
	ctx := dtc.GetCommonTlsContext()
	f += ".typed_config.common_tls_context"
	if v := ctx.GetTlsParams().GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO && v != tlsv3.TlsParameters_TLSv1_2 && v != tlsv3.TlsParameters_TLSv1_3 {
		return out, nil, fmt.Errorf("%s.tls_params.tls_minimum_protocol_version: %s; knit-proxy terminates TLS 1.2 or later only", f, v)
	}
	if len(ctx.GetTlsCertificates()) == 0 {
		return out, nil, fmt.Errorf("%s.tls_certificates: at least one is required", f)
	}
	for j, c := range ctx.GetTlsCertificates() {
		chain, key := c.GetCertificateChain().GetInlineString(), c.GetPrivateKey().GetInlineString()
		if chain == "" || key == "" {
			return out, nil, fmt.Errorf("%s.tls_certificates[%d]: certificate_chain and private_key must be inline_string PEM", f, j)
		}
		if _, err := tls.X509KeyPair([]byte(chain), []byte(key)); err != nil {
			return out, nil, fmt.Errorf("%s.tls_certificates[%d]: not a PEM certificate chain and its key: %v", f, j, err)
		}
		out.Certificates = append(out.Certificates, config.PEMKeyPair{CertificatePEM: chain, KeyPEM: key})
	}
	alpn := ctx.GetAlpnProtocols()
	for j, p := range alpn {
		if p != "h2" && p != "http/1.1" {
			return out, nil, fmt.Errorf("%s.alpn_protocols[%d]: %q; only h2 and http/1.1 are served", f, j, p)
		}
	}
	return out, alpn, nil
}

// tlsTransportSocket is Envoy's TLS transport socket, the only one read.
const tlsTransportSocket = "envoy.transport_sockets.tls"
