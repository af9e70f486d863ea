// Command knit-proxy is knit's data plane. `knit-proxy run --config FILE`
// serves a static config (standalone and benchmarks); `knit-proxy init` writes
// a pod's traffic-capture rules. The control-plane mode (xDS) comes later.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/admin"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/metrics"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "init" {
		os.Exit(runInit(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: knit-proxy run --config FILE [--log-level info|debug] [--watch-interval 1s]\n"+
			"       knit-proxy init [--dry-run] --proxy-uid=1337 --inbound-port=15006 --outbound-port=15001 [--exclude-inbound-ports=P,...] [--exclude-outbound-ports=P,...] [--exclude-outbound-cidrs=CIDR,...]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	cfgPath := fs.String("config", "", "YAML config file (static mode)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	watch := fs.Duration("watch-interval", time.Second, "how often to check the config file for changes; 0 disables")
	fs.Parse(os.Args[2:])
	if *cfgPath == "" {
		fmt.Fprintln(os.Stderr, "knit-proxy run: --config is required (the xDS mode is not implemented yet)")
		os.Exit(2)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(os.Stderr, "bad --log-level:", err)
		os.Exit(2)
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if err := run(log, *cfgPath, *watch); err != nil {
		log.Error(err, "knit-proxy stopped")
		os.Exit(1)
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
	var adm *admin.Server
	if cfg.Admin.Address != "" {
		if adm, err = admin.Start(cfg.Admin.Address, p, m.Registry); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		log.Info("admin listening", "address", adm.Addr().String())
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	var tick <-chan time.Time
	if watchEvery > 0 {
		t := time.NewTicker(watchEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			if w.changed() {
				reload(log, p, m, path)
			}
		case s := <-sigs:
			if s == syscall.SIGHUP {
				w.changed()
				reload(log, p, m, path)
				continue
			}
			cur := p.CurrentConfig().(*config.Bootstrap)
			log.Info("draining", "signal", s.String(), "timeout", cur.Drain.Timeout.D().String())
			ctx, cancel := context.WithTimeout(context.Background(), cur.Drain.Timeout.D())
			derr := p.Drain(ctx)
			cancel()
			if adm != nil {
				actx, acancel := context.WithTimeout(context.Background(), time.Second)
				adm.Close(actx)
				acancel()
			}
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
