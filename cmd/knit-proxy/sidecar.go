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
	adminPort, inboundPort, outboundPort int
}

func (f *sidecarFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.adminPort, "admin-port", 15020, "sidecar: admin port (/ready, /live, /metrics, /app-health/), on all addresses")
	fs.IntVar(&f.inboundPort, "inbound-port", 15006, "sidecar: port of the inbound listener (captured inbound traffic)")
	fs.IntVar(&f.outboundPort, "outbound-port", 15001, "sidecar: port of the outbound listener (captured outbound traffic)")
}

// sidecarConfig builds the sidecar's config from its flags and the
// environment the injector sets: an inbound and an outbound listener that
// forward each connection to its original destination, the admin server on
// all addresses (the kubelet probes it), and the app probes.
func sidecarConfig(f sidecarFlags, getenv func(string) string) (*config.Bootstrap, map[string]appprobe.Handler, []string, error) {
	var notes []string
	for name, p := range map[string]int{"--admin-port": f.adminPort, "--inbound-port": f.inboundPort, "--outbound-port": f.outboundPort} {
		if p < 1 || p > 65535 {
			return nil, nil, nil, fmt.Errorf("%s: %d is not a port between 1 and 65535", name, p)
		}
	}
	if f.adminPort == f.inboundPort || f.adminPort == f.outboundPort || f.inboundPort == f.outboundPort {
		return nil, nil, nil, fmt.Errorf("--admin-port, --inbound-port and --outbound-port must differ")
	}
	b := &config.Bootstrap{
		Admin: config.Admin{Address: net.JoinHostPort("", strconv.Itoa(f.adminPort))},
		Listeners: []config.Listener{
			{Name: "inbound", Address: net.JoinHostPort("", strconv.Itoa(f.inboundPort)), Direction: config.Inbound, OriginalDestination: true},
			{Name: "outbound", Address: net.JoinHostPort("", strconv.Itoa(f.outboundPort)), Direction: config.Outbound, OriginalDestination: true},
		},
	}
	switch v := getenv("KNIT_ACCESS_LOG"); v {
	case "", "Off":
	case "JSON":
		b.AccessLog = config.AccessLog{Enabled: true, Path: "stdout"}
	case "Text":
		b.AccessLog = config.AccessLog{Enabled: true, Path: "stdout"}
		notes = append(notes, "KNIT_ACCESS_LOG=Text is not implemented; the access log is written as JSON")
	default:
		return nil, nil, nil, fmt.Errorf("KNIT_ACCESS_LOG: %q is not Off, JSON or Text", v)
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
