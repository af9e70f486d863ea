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
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/knit-mesh/knit/proxy/config"
)

// bindsPort says whether an xDS Listener asks to be bound (bind_to_port unset or true): a
// gateway's listeners, which a gateway proxy serves as real listeners. A sidecar refuses them.
func bindsPort(l *listenerv3.Listener) bool {
	b := l.GetBindToPort()
	return b == nil || b.GetValue()
}

// translateGatewayListener turns a bound Listener into one of the proxy's own listeners: HTTP
// only, through one HttpConnectionManager whose routes come from RDS.
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
	if len(l.GetFilterChains()) != 1 {
		return out, fmt.Errorf("filter_chains: a gateway listener has exactly one (HTTP) filter chain, got %d", len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	if fc.GetFilterChainMatch() != nil {
		return out, errors.New("filter_chains[0].filter_chain_match: not read on a gateway listener")
	}
	filter, err := onlyFilter(fc, "filter_chains[0]")
	if err != nil {
		return out, err
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := unpack(filter.GetTypedConfig(), hcm, "filter_chains[0].filters[0].typed_config"); err != nil {
		return out, err
	}
	out.RouteConfig, err = readHCM(hcm, "filter_chains[0].filters[0].typed_config")
	return out, err
}
