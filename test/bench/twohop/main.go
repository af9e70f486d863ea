// Command twohop is make bench's two-hop target: two knit sidecars in one process, a client
// side that routes HTTP/1 to a server side, which forwards it to the upstream as a sidecar
// forwards to its app. With -mtls the hop between them is mutual TLS (workload certificates
// from an in-process test CA, the server endpoint marked meshed, STRICT on the client side);
// without, it is plaintext. Both run the server side's inbound mTLS detection (PERMISSIVE), so
// the two differ only by the mutual TLS hop. A benchmark fixture, not a product binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/identity"
	"github.com/knit-mesh/knit/proxy/identity/identitytest"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/mtls"
)

const (
	clientID = "spiffe://cluster.local/ns/bench/sa/client"
	serverID = "spiffe://cluster.local/ns/bench/sa/server"
)

var (
	listen   = flag.String("listen", "127.0.0.1:0", "the client side's HTTP listener")
	upstream = flag.String("upstream", "", "the upstream (the server side's app), IP:port")
	withMTLS = flag.Bool("mtls", false, "mutual TLS between the two sidecars")
)

func main() {
	flag.Parse()
	up, err := netip.ParseAddrPort(*upstream)
	must(err)
	dir, err := os.MkdirTemp("", "knit-twohop")
	must(err)
	defer os.RemoveAll(dir)
	f := &fixture{}
	ca := identitytest.Start(f, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sm := metrics.New()
	in, err := mtls.NewInbound(mtls.Permissive, workload(ctx, ca, dir, serverID, sm.Registry), logr.Discard(), sm.Registry)
	must(err)
	server := dataplane.New(logr.Discard(), sm)
	server.Inbound = in
	server.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return up, nil }
	// A generous detect timeout: under callgrind (make bench's instruction count) the process
	// runs tens of times slower, and the default 500 ms between a mesh peer's handshake and its
	// first request was seen to expire (one 502 in 3000 requests on a machine at load 19).
	apply(server, `listeners: [{name: inbound, address: "127.0.0.1:0", direction: inbound, originalDestination: true, detectTimeout: 10s}]`)

	cm := metrics.New()
	client := dataplane.New(logr.Discard(), cm)
	if *withMTLS {
		client.Outbound, err = mtls.NewOutbound(mtls.Strict, workload(ctx, ca, dir, clientID, cm.Registry), logr.Discard(), cm.Registry)
		must(err)
	}
	apply(client, fmt.Sprintf(`
listeners: [{name: bench, address: %q, direction: outbound, protocol: http, routeConfig: main}]
routeConfigs: [{name: main, virtualHosts: [{name: all, routes: [{name: server, timeout: 15s, clusters: [{name: server}]}]}]}]
clusters: [{name: server, endpoints: [{address: %q, meshed: %v, identity: %q}]}]
`, *listen, server.ListenerAddr("inbound").String(), *withMTLS, serverID))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	client.Drain(dctx)
	server.Drain(dctx)
	f.cleanup()
}

func apply(p *dataplane.Proxy, yaml string) {
	cfg, err := config.Parse([]byte(yaml))
	must(err)
	must(p.Apply(context.Background(), cfg))
}

// workload runs a sidecar's certificate manager for id against ca until it holds a certificate.
func workload(ctx context.Context, ca *identitytest.CA, dir, id string, reg prometheus.Registerer) *identity.Manager {
	sub := filepath.Join(dir, filepath.Base(id))
	must(os.MkdirAll(sub, 0o700))
	token, bundle := filepath.Join(sub, "token"), filepath.Join(sub, "ca.crt")
	must(os.WriteFile(token, []byte(identitytest.Token), 0o600))
	must(os.WriteFile(bundle, []byte(identitytest.PEM(ca.Root)), 0o600))
	m, err := identity.New(identity.Config{Address: ca.Addr, ID: id, TokenFile: token, TrustBundleFile: bundle, Log: logr.Discard()}, reg)
	must(err)
	go m.Run(ctx)
	for deadline := time.Now().Add(30 * time.Second); !m.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			must(fmt.Errorf("%s: no workload certificate from the test CA", id))
		}
	}
	return m
}

// fixture lets the test CA (written for tests) run in this process: a failure ends the
// process, cleanups run at exit.
type fixture struct {
	testing.TB
	cleanups []func()
}

func (*fixture) Helper()                           {}
func (*fixture) Fatal(args ...any)                 { must(fmt.Errorf("%s", fmt.Sprint(args...))) }
func (*fixture) Fatalf(format string, args ...any) { must(fmt.Errorf(format, args...)) }
func (f *fixture) Cleanup(fn func())               { f.cleanups = append(f.cleanups, fn) }
func (f *fixture) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "twohop:", err)
		os.Exit(1)
	}
}
