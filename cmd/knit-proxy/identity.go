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
)

// identityPort is the control plane's identity service, on the host of KNIT_CONTROL_PLANE.
const identityPort = 15012

// startWorkloadIdentity starts fetching and renewing the pod's certificate when the injector
// pointed the sidecar at a control plane (KNIT_CONTROL_PLANE); without one it returns nil and
// the sidecar runs without an identity. KNIT_IDENTITY_ADDRESS overrides the service's address.
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

// sidecarState is ready when the data plane is and, with an identity, once it holds a valid
// certificate: the app starts only when its proxy can present who it is.
type sidecarState struct {
	admin.State
	identity *identity.Manager
}

func (s sidecarState) Ready() bool {
	return s.State.Ready() && (s.identity == nil || s.identity.Ready())
}
