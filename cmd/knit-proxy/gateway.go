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

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/internal/buildinfo"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/identity"
	"github.com/knit-mesh/knit/proxy/metrics"
)

// gatewayDrainDelay is how long a gateway proxy keeps accepting after SIGTERM. Clients reach it
// through its Service, and kube-proxy stops sending new connections to a terminating pod only
// once its endpoint update has arrived; a listener closed before that refuses them. The
// operator's terminationGracePeriodSeconds covers this delay and the drain timeout.
const gatewayDrainDelay = 5 * time.Second

// gatewayConfig is a gateway proxy's own part of its config: the admin ports, the drain delay
// and the Mesh's observability. Its listeners, routes and clusters all come from the control plane.
func gatewayConfig(f sidecarFlags, getenv func(string) string) (*config.Bootstrap, error) {
	if f.adminPort == f.localAdminPort {
		return nil, errors.New("--admin-port and --local-admin-port must differ")
	}
	for _, req := range []string{"KNIT_CONTROL_PLANE", "KNIT_GATEWAY", "KNIT_IDENTITY"} {
		if getenv(req) == "" {
			return nil, fmt.Errorf("%s is required with --gateway", req)
		}
	}
	b := &config.Bootstrap{
		Admin: config.Admin{
			Address:      net.JoinHostPort("127.0.0.1", strconv.Itoa(f.localAdminPort)),
			ProbeAddress: net.JoinHostPort("", strconv.Itoa(f.adminPort)),
		},
		Drain:   config.Drain{Delay: config.Duration(gatewayDrainDelay)},
		Gateway: true,
	}
	if err := observabilityFromEnv(b, getenv); err != nil {
		return nil, err
	}
	b.SetDefaults()
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// runGateway serves a Gateway's listeners as the control plane sends them, until SIGTERM;
// then it drains. It is Ready once the first configuration is applied.
func runGateway(log logr.Logger, f sidecarFlags, getenv func(string) string) error {
	base, err := gatewayConfig(f, getenv)
	if err != nil {
		return err
	}
	log.Info("gateway mode", "version", buildinfo.Version, "pod", getenv("POD_NAMESPACE")+"/"+getenv("POD_NAME"),
		"gateway", getenv("KNIT_GATEWAY"), "revision", getenv("KNIT_REVISION"), "controlPlane", getenv("KNIT_CONTROL_PLANE"))
	m := metrics.New()
	p, ident, err := gatewayDataPlane(context.Background(), log, getenv, m)
	if err != nil {
		return err
	}
	if err := p.Apply(context.Background(), base); err != nil {
		return fmt.Errorf("apply config: %w", err)
	}
	x, err := startXDS(log, base, p, m, getenv)
	if err != nil {
		return err
	}
	defer x.Close()
	// Ready once configured and holding a certificate: before it, meshed backends under STRICT
	// would be unreachable.
	adm, err := startAdmin(log, base.Admin, proxyState{x, ident}, m, p.Retire)
	if err != nil {
		return err
	}
	return serve(log, p, m, adm, nil, 0, x.Close)
}

// gatewayDataPlane is a gateway proxy's data plane with the Gateway's workload identity
// (KNIT_IDENTITY, its ServiceAccount's SPIFFE ID), fetched and renewed as a sidecar's is: the
// clusters reach endpoints that discovery marks as meshed over mutual TLS with it, checking each
// backend's SPIFFE ID, and every other endpoint in plaintext. KNIT_MTLS_MODE decides what
// happens while it holds no valid certificate, as for sidecars.
func gatewayDataPlane(ctx context.Context, log logr.Logger, getenv func(string) string, m *metrics.Metrics) (*dataplane.Proxy, *identity.Manager, error) {
	ident, err := startWorkloadIdentity(ctx, log, getenv, m.Registry)
	if err != nil {
		return nil, nil, err
	}
	p := dataplane.New(log, m)
	if p.Outbound, err = outboundMTLS(log, getenv, ident, m.Registry); err != nil {
		return nil, nil, err
	}
	return p, ident, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
