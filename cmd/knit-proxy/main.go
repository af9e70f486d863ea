// Command knit-proxy is knit's data plane. `knit-proxy run --config FILE`
// serves a static config (standalone and benchmarks); `knit-proxy init` writes
// a pod's traffic-capture rules; `knit-proxy run --sidecar` serves a pod,
// configured over xDS when KNIT_CONTROL_PLANE is set.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/internal/buildinfo"
	"github.com/knit-mesh/knit/proxy/admin"
	"github.com/knit-mesh/knit/proxy/appprobe"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/metrics"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "init" {
		os.Exit(runInit(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) >= 2 && os.Args[1] == "drain" {
		os.Exit(runDrain(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: knit-proxy run --config FILE [--log-level info|debug] [--watch-interval 1s]\n"+
			"       knit-proxy run --gateway [--admin-port 15020] [--local-admin-port 15000]\n"+
			"       knit-proxy drain [--local-admin-port 15000]   (the sidecar's preStop hook)\n"+
			"       knit-proxy init [--dry-run] --proxy-uid=1337 --inbound-port=15006 --outbound-port=15001 [--exclude-inbound-ports=P,...] [--exclude-outbound-ports=P,...] [--exclude-outbound-cidrs=CIDR,...]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	cfgPath := fs.String("config", "", "YAML config file (static mode)")
	sidecar := fs.Bool("sidecar", false, "sidecar mode: config from flags and the injector's environment; routes from the control plane when KNIT_CONTROL_PLANE is set, other traffic forwarded to its original destination")
	gateway := fs.Bool("gateway", false, "gateway mode (the operator's gateway Deployments): listeners, routes and clusters all from the control plane (KNIT_CONTROL_PLANE, KNIT_GATEWAY=<namespace>/<name>); admin ports from the sidecar flags")
	var sf sidecarFlags
	sf.register(fs)
	level := fs.String("log-level", "info", "debug, info, warn or error")
	watch := fs.Duration("watch-interval", time.Second, "how often to check the config file for changes; 0 disables")
	fs.Parse(os.Args[2:])
	if modes := btoi(*cfgPath != "") + btoi(*sidecar) + btoi(*gateway); modes != 1 {
		fmt.Fprintln(os.Stderr, "knit-proxy run: exactly one of --config, --sidecar and --gateway is required")
		os.Exit(2)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(os.Stderr, "bad --log-level:", err)
		os.Exit(2)
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	var err error
	switch {
	case *sidecar:
		err = runSidecar(log, sf, os.Getenv)
	case *gateway:
		err = runGateway(log, sf, os.Getenv)
	default:
		err = run(log, *cfgPath, *watch)
	}
	if err != nil {
		log.Error(err, "knit-proxy stopped")
		os.Exit(1)
	}
}

// runSidecar serves the config built from flags and environment until SIGTERM.
func runSidecar(log logr.Logger, f sidecarFlags, getenv func(string) string) error {
	cfg, probes, notes, err := sidecarConfig(f, getenv)
	if err != nil {
		return err
	}
	if err := checkUID(f, os.Geteuid()); err != nil {
		return err
	}
	for _, n := range notes {
		log.Info(n)
	}
	log.Info("sidecar mode", "version", buildinfo.Version, "pod", getenv("POD_NAMESPACE")+"/"+getenv("POD_NAME"), "identity", getenv("KNIT_IDENTITY"),
		"revision", getenv("KNIT_REVISION"), "controlPlane", getenv("KNIT_CONTROL_PLANE"), "appProbes", len(probes))
	m := metrics.New()
	ident, err := startWorkloadIdentity(context.Background(), log, getenv, m.Registry)
	if err != nil {
		return err
	}
	p := dataplane.New(log, m)
	if p.Inbound, err = inboundMTLS(log, getenv, ident, m.Registry); err != nil {
		return err
	}
	if p.Outbound, err = outboundMTLS(log, getenv, ident, m.Registry); err != nil {
		return err
	}
	if err := p.Apply(context.Background(), cfg); err != nil {
		return fmt.Errorf("apply config: %w", err)
	}
	var state admin.State = p
	var leave func()
	if getenv("KNIT_CONTROL_PLANE") != "" {
		x, err := startXDS(log, cfg, p, m, getenv)
		if err != nil {
			return err
		}
		defer x.Close()
		state, leave = x, x.Close
	}
	prober := appprobe.New(probes)
	adm, err := startAdmin(log, cfg.Admin, proxyState{state, ident}, m, p.Retire, func(mux *http.ServeMux) {
		mux.Handle("GET "+appprobe.PathPrefix, prober)
	})
	if err != nil {
		return err
	}
	return serve(log, p, m, adm, nil, 0, leave)
}

// startAdmin starts the full admin port and, when configured, the probe port
// (with extra handlers); extra goes on the full port too, and so does POST /drain, which
// calls retire (see runDrain): only what runs in the pod may start a drain.
func startAdmin(log logr.Logger, cfg config.Admin, p admin.State, m *metrics.Metrics, retire func(), extra ...func(*http.ServeMux)) ([]*admin.Server, error) {
	var out []*admin.Server
	for _, a := range []struct {
		addr  string
		scope admin.Scope
		field string
	}{{cfg.Address, admin.Full, "admin.address"}, {cfg.ProbeAddress, admin.Probes, "admin.probeAddress"}} {
		if a.addr == "" {
			continue
		}
		reg := m.Registry
		if cfg.NoMetrics {
			reg = nil
		}
		handlers := extra
		if a.scope == admin.Full {
			handlers = append(slices.Clip(extra), drainHandler(log, retire))
		}
		s, err := admin.Start(a.addr, a.scope, p, reg, handlers...)
		if err != nil {
			closeAdmin(out)
			return nil, fmt.Errorf("%s: %w", a.field, err)
		}
		log.Info("admin listening", "address", s.Addr().String(), "probesOnly", a.scope == admin.Probes)
		out = append(out, s)
	}
	return out, nil
}

func closeAdmin(servers []*admin.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range servers {
		s.Close(ctx)
	}
}

func run(log logr.Logger, path string, watchEvery time.Duration) error {
	// Hash the file before loading it: a change made while we start is then
	// seen as a change, never taken as the baseline.
	w := &watcher{path: path}
	w.changed()
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	m := metrics.New()
	p := dataplane.New(log, m)
	if err := p.Apply(context.Background(), cfg); err != nil {
		return fmt.Errorf("apply config: %w", err)
	}
	adm, err := startAdmin(log, cfg.Admin, p, m, p.Retire)
	if err != nil {
		return err
	}
	return serve(log, p, m, adm, w, watchEvery, nil)
}

// serve reloads on file change or SIGHUP (with a config file, w) and drains on SIGTERM/SIGINT;
// leave, when set, is called before the drain (it disconnects from the control plane).
func serve(log logr.Logger, p *dataplane.Proxy, m *metrics.Metrics, adm []*admin.Server, w *watcher, watchEvery time.Duration, leave func()) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	return serveSignals(log, p, m, adm, w, watchEvery, sigs, leave)
}

func serveSignals(log logr.Logger, p *dataplane.Proxy, m *metrics.Metrics, adm []*admin.Server, w *watcher, watchEvery time.Duration,
	sigs <-chan os.Signal, leave func()) error {
	var tick <-chan time.Time
	if watchEvery > 0 && w != nil {
		t := time.NewTicker(watchEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			if w.changed() {
				reload(log, p, m, w.path)
			}
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if w == nil {
					continue
				}
				w.changed()
				reload(log, p, m, w.path)
				continue
			}
			if leave != nil {
				// A draining proxy refuses new configuration: were it still connected, each push
				// would be a refusal (NACK) that the Mesh shows as a data plane rejecting its
				// config. It leaves first, and the control plane counts it gone.
				log.Info("leaving the control plane before draining")
				leave()
			}
			cur := p.CurrentConfig().(*config.Bootstrap)
			log.Info("draining", "signal", s.String(), "delay", cur.Drain.Delay.D().String(), "timeout", cur.Drain.Timeout.D().String(),
				"retiredByPreStop", p.Retiring())
			ctx, cancel := context.WithTimeout(context.Background(), cur.Drain.Delay.D()+cur.Drain.Timeout.D())
			derr := p.Drain(ctx)
			cancel()
			closeAdmin(adm)
			if derr != nil && !errors.Is(derr, context.DeadlineExceeded) {
				return derr
			}
			log.Info("drained", "complete", derr == nil)
			return nil
		}
	}
}

// reload keeps the last good config when the new one is bad.
func reload(log logr.Logger, p *dataplane.Proxy, m *metrics.Metrics, path string) {
	cfg, err := config.Load(path)
	if err == nil {
		err = p.Apply(context.Background(), cfg)
	}
	if err != nil {
		m.Reloads.WithLabelValues("failure").Inc()
		log.Error(err, "config reload failed; keeping the last good config")
		return
	}
	m.Reloads.WithLabelValues("success").Inc()
	log.Info("config reloaded")
}

// watcher notices content changes by hash; polling survives editors and
// Kubernetes ConfigMap symlink swaps alike.
type watcher struct {
	path string
	sum  []byte
}

func (w *watcher) changed() bool {
	b, err := os.ReadFile(w.path)
	if err != nil {
		return false
	}
	s := sha256.Sum256(b)
	if bytes.Equal(s[:], w.sum) {
		return false
	}
	w.sum = s[:]
	return true
}
