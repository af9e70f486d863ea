package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/knit-mesh/knit/proxy/admin"
	"github.com/knit-mesh/knit/proxy/identity"
	"github.com/knit-mesh/knit/proxy/mtls"
)

// identityPort is the control plane's identity service, on the host of KNIT_CONTROL_PLANE.
const identityPort = 15012

// startWorkloadIdentity starts fetching and renewing the pod's certificate (for KNIT_IDENTITY)
// when the injector or the gateway's Deployment pointed the proxy at a control plane
// (KNIT_CONTROL_PLANE); without one it returns nil and the sidecar runs without an identity. KNIT_IDENTITY_ADDRESS overrides the service's address.
func startWorkloadIdentity(ctx context.Context, log logr.Logger, getenv func(string) string, reg prometheus.Registerer) (*identity.Manager, error) {
	controlPlane := getenv("KNIT_CONTROL_PLANE")
	if controlPlane == "" {
		return nil, nil
	}
	addr := getenv("KNIT_IDENTITY_ADDRESS")
	if addr == "" {
		host, _, err := net.SplitHostPort(controlPlane)
		if err != nil {
			return nil, fmt.Errorf("KNIT_CONTROL_PLANE %q is not host:port: %w", controlPlane, err)
		}
		addr = net.JoinHostPort(host, strconv.Itoa(identityPort))
	}
	m, err := identity.New(identity.Config{
		Address:         addr,
		ID:              getenv("KNIT_IDENTITY"),
		TokenFile:       getenv("KNIT_TOKEN_FILE"),
		TrustBundleFile: getenv("KNIT_TRUST_BUNDLE"),
		Log:             log.WithName("identity"),
	}, reg)
	if err != nil {
		return nil, fmt.Errorf("workload identity: %w", err)
	}
	go m.Run(ctx)
	log.Info("workload identity", "identity", m.ID(), "identityService", addr)
	return m, nil
}

// inboundMTLS applies KNIT_MTLS_MODE to the inbound listener: mutual TLS from mesh peers is
// terminated with the workload certificate; plaintext is accepted (PERMISSIVE) or refused
// (STRICT). Without an identity there is no mTLS, and STRICT cannot be honoured.
func inboundMTLS(log logr.Logger, getenv func(string) string, ident *identity.Manager, reg prometheus.Registerer) (*mtls.Inbound, error) {
	mode, err := mtls.ParseMode(getenv("KNIT_MTLS_MODE"))
	if err != nil {
		return nil, fmt.Errorf("KNIT_MTLS_MODE: %w", err)
	}
	if ident == nil {
		if mode == mtls.Strict {
			return nil, fmt.Errorf("KNIT_MTLS_MODE is STRICT but the sidecar has no control plane (KNIT_CONTROL_PLANE) to get a certificate from")
		}
		return nil, nil
	}
	log.Info("inbound mutual TLS", "mode", string(mode))
	return mtls.NewInbound(mode, ident, log.WithName("mtls"), reg)
}

// outboundMTLS makes the sidecar reach the endpoints discovery marks as meshed over mutual TLS
// with its workload certificate; KNIT_MTLS_MODE decides what happens while it holds none
// (STRICT refuses, PERMISSIVE speaks plaintext). Without an identity everything is plaintext.
func outboundMTLS(log logr.Logger, getenv func(string) string, ident *identity.Manager, reg prometheus.Registerer) (*mtls.Outbound, error) {
	if ident == nil {
		return nil, nil
	}
	mode, err := mtls.ParseMode(getenv("KNIT_MTLS_MODE"))
	if err != nil {
		return nil, fmt.Errorf("KNIT_MTLS_MODE: %w", err)
	}
	return mtls.NewOutbound(mode, ident, log.WithName("mtls"), reg)
}

// proxyState is ready when the data plane is and, with an identity, once it holds a valid
// certificate: a sidecar's app starts, and a gateway takes traffic, only when the proxy can
// present who it is.
type proxyState struct {
	admin.State
	identity *identity.Manager
}

func (s proxyState) Ready() bool {
	return s.State.Ready() && (s.identity == nil || s.identity.Ready())
}
