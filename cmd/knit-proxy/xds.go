package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/xds"
)

// firstConfigDeadline is how long a new sidecar waits quietly for its first
// configuration from the control plane; after it, it says so in the log
// (and keeps waiting, not Ready).
const firstConfigDeadline = 60 * time.Second

// proxyVersion is sent in node.metadata.PROXY_VERSION.
var proxyVersion = "dev"

// xdsSidecar is the sidecar's xDS client and the readiness it decides.
type xdsSidecar struct {
	client *xds.Client
	proxy  *dataplane.Proxy
	stop   context.CancelFunc
	done   chan struct{}
}

// Ready: a sidecar with a control plane is Ready only once it has the
// control plane's first configuration; until then it forwards what it
// captures to the original destinations, but Kubernetes sends it no
// traffic and a rollout waits for it.
func (x *xdsSidecar) Ready() bool { return x.client.HasConfig() && x.proxy.Ready() }

// CurrentConfig is the running config, for /config.
func (x *xdsSidecar) CurrentConfig() any { return x.proxy.CurrentConfig() }

// Close stops the client.
func (x *xdsSidecar) Close() {
	x.stop()
	<-x.done
}

// xdsOptions reads the injector's environment.
func xdsOptions(getenv func(string) string) (xds.Options, error) {
	addr := getenv("KNIT_CONTROL_PLANE")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return xds.Options{}, fmt.Errorf("KNIT_CONTROL_PLANE: %q is not host:port: %w", addr, err)
	}
	o := xds.Options{Address: addr, ServerName: host, TrustBundle: getenv("KNIT_TRUST_BUNDLE"), TokenFile: getenv("KNIT_TOKEN_FILE"),
		Metadata: map[string]string{"POD_IP": getenv("POD_IP"), "PROXY_VERSION": proxyVersion, "REVISION": getenv("KNIT_REVISION")}}
	for _, req := range []struct{ name, val string }{{"KNIT_TRUST_BUNDLE", o.TrustBundle}, {"KNIT_TOKEN_FILE", o.TokenFile},
		{"POD_NAMESPACE", getenv("POD_NAMESPACE")}, {"POD_NAME", getenv("POD_NAME")}} {
		if req.val == "" {
			return xds.Options{}, fmt.Errorf("%s is required with KNIT_CONTROL_PLANE", req.name)
		}
	}
	o.NodeID = getenv("POD_NAMESPACE") + "/" + getenv("POD_NAME")
	return o, nil
}

// startXDS connects the sidecar to its control plane: base (the sidecar's
// own listeners and admin) plus what the control plane sends, applied with
// the usual reload semantics.
func startXDS(log logr.Logger, base *config.Bootstrap, p *dataplane.Proxy, m *metrics.Metrics, getenv func(string) string) (*xdsSidecar, error) {
	opts, err := xdsOptions(getenv)
	if err != nil {
		return nil, err
	}
	if base.Gateway {
		// The control plane serves a gateway pod its Gateway's listeners (node.metadata.GATEWAY).
		opts.Gateway = true
		opts.Metadata["GATEWAY"] = getenv("KNIT_GATEWAY")
	}
	opts.OnResponse = func(_ string, err error) {
		if err != nil {
			m.Reloads.WithLabelValues("failure").Inc()
		} else {
			m.Reloads.WithLabelValues("success").Inc()
		}
	}
	c, err := xds.New(opts, base, p.Apply, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	x := &xdsSidecar{client: c, proxy: p, stop: cancel, done: make(chan struct{})}
	go func() { defer close(x.done); c.Run(ctx) }()
	go warnIfUnconfigured(ctx, log, c, opts.Address, firstConfigDeadline)
	return x, nil
}

// warnIfUnconfigured logs, once the deadline passes without a first
// configuration, why the pod is not Ready, then every deadline again.
func warnIfUnconfigured(ctx context.Context, log logr.Logger, c *xds.Client, addr string, deadline time.Duration) {
	t := time.NewTicker(deadline)
	defer t.Stop()
	waited := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.Synced():
			return
		case <-t.C:
			waited += deadline
			log.Error(fmt.Errorf("no configuration from the control plane at %s after %s", addr, waited),
				"the pod stays not Ready until the control plane sends one (captured traffic is still forwarded to its original destinations); check that knit-controlplane is running and this pod's ServiceAccount token and the trust bundle are mounted",
				"lastRefusal", c.LastNack())
		}
	}
}
