package main

import (
	"flag"
	"fmt"
	"net"
	"strconv"

	"github.com/knit-mesh/knit/proxy/appprobe"
	"github.com/knit-mesh/knit/proxy/config"
)

// sidecarFlags are the flags `knit-proxy run --sidecar` takes from the injector.
type sidecarFlags struct {
	adminPort, localAdminPort, inboundPort, outboundPort int
	proxyUID                                             int
}

func (f *sidecarFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.adminPort, "admin-port", 15020, "sidecar: probe port on all addresses, for the kubelet and Prometheus: /ready, /live, /metrics, /app-health/ only")
	fs.IntVar(&f.localAdminPort, "local-admin-port", 15000, "sidecar: full admin port on 127.0.0.1 only: also /config and /debug/pprof/")
	fs.IntVar(&f.inboundPort, "inbound-port", 15006, "sidecar: port of the inbound listener (captured inbound traffic)")
	fs.IntVar(&f.outboundPort, "outbound-port", 15001, "sidecar: port of the outbound listener (captured outbound traffic)")
	fs.IntVar(&f.proxyUID, "proxy-uid", 1337, "sidecar: the UID the capture rules exempt (init's --proxy-uid); the sidecar refuses to start as any other")
}

// checkUID refuses to run as a UID the capture rules do not exempt: every
// connection the proxy opens would be captured again and loop back to it.
func checkUID(f sidecarFlags, euid int) error {
	if euid != f.proxyUID {
		return fmt.Errorf("running as UID %d, but the capture rules exempt only UID %d (--proxy-uid): the proxy's own "+
			"connections would be redirected back to it; run the container as UID %d (securityContext.runAsUser) or pass "+
			"the same --proxy-uid to init and run", euid, f.proxyUID, f.proxyUID)
	}
	return nil
}

// sidecarConfig builds the sidecar's config from its flags and the
// environment the injector sets: an inbound and an outbound listener that
// forward each connection to its original destination, the probe port on
// all addresses (the kubelet probes it, Prometheus scrapes it), the full
// admin port on loopback, and the app probes.
func sidecarConfig(f sidecarFlags, getenv func(string) string) (*config.Bootstrap, map[string]appprobe.Handler, []string, error) {
	var notes []string
	ports := map[string]int{"--admin-port": f.adminPort, "--local-admin-port": f.localAdminPort,
		"--inbound-port": f.inboundPort, "--outbound-port": f.outboundPort}
	seen := map[int]bool{}
	for name, p := range ports {
		if p < 1 || p > 65535 {
			return nil, nil, nil, fmt.Errorf("%s: %d is not a port between 1 and 65535", name, p)
		}
		seen[p] = true
	}
	if len(seen) != len(ports) {
		return nil, nil, nil, fmt.Errorf("--admin-port, --local-admin-port, --inbound-port and --outbound-port must differ")
	}
	b := &config.Bootstrap{
		Admin: config.Admin{
			Address:      net.JoinHostPort("127.0.0.1", strconv.Itoa(f.localAdminPort)),
			ProbeAddress: net.JoinHostPort("", strconv.Itoa(f.adminPort)),
		},
		Listeners: []config.Listener{
			{Name: "inbound", Address: net.JoinHostPort("", strconv.Itoa(f.inboundPort)), Direction: config.Inbound, OriginalDestination: true},
			{Name: "outbound", Address: net.JoinHostPort("", strconv.Itoa(f.outboundPort)), Direction: config.Outbound, OriginalDestination: true},
		},
	}
	if err := observabilityFromEnv(b, getenv); err != nil {
		return nil, nil, nil, err
	}
	b.SetDefaults()
	if err := b.Validate(); err != nil {
		return nil, nil, nil, err
	}
	probes, err := appprobe.Parse(getenv("KNIT_APP_PROBES"))
	if err != nil {
		return nil, nil, nil, err
	}
	return b, probes, notes, nil
}

// observabilityFromEnv applies what the injector (or, for a gateway, the operator) passes from
// the Mesh's observability (injection.ObservabilityEnv): access logs (KNIT_ACCESS_LOG), span
// export (KNIT_TRACING_*) and whether /metrics is served (KNIT_METRICS).
func observabilityFromEnv(b *config.Bootstrap, getenv func(string) string) error {
	switch v := getenv("KNIT_ACCESS_LOG"); v {
	case "", "Off":
	case "JSON":
		b.AccessLog = config.AccessLog{Enabled: true, Path: "stdout", Format: config.AccessLogJSON}
	case "Text":
		b.AccessLog = config.AccessLog{Enabled: true, Path: "stdout", Format: config.AccessLogText}
	default:
		return fmt.Errorf("KNIT_ACCESS_LOG: %q is not Off, JSON or Text", v)
	}
	switch v := getenv("KNIT_METRICS"); v {
	case "", "on":
	case "off":
		b.Admin.NoMetrics = true
	default:
		return fmt.Errorf("KNIT_METRICS: %q is not on or off", v)
	}
	endpoint := getenv("KNIT_TRACING_ENDPOINT")
	if endpoint == "" {
		return nil
	}
	pct, err := strconv.Atoi(getenv("KNIT_TRACING_SAMPLING_PERCENT"))
	if err != nil || pct < 0 || pct > 100 {
		return fmt.Errorf("KNIT_TRACING_SAMPLING_PERCENT: %q is not a whole number from 0 to 100", getenv("KNIT_TRACING_SAMPLING_PERCENT"))
	}
	ratio := float64(pct) / 100
	b.Tracing = config.Tracing{OTLPEndpoint: endpoint, SamplingRatio: &ratio, ServiceName: getenv("KNIT_TRACING_SERVICE_NAME")}
	return nil
}
