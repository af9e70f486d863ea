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

// Command knit-controlplane is one revision's control plane: it serves the sidecar-injection
// webhook, the delta ADS (xDS) server and the identity (CSR) server with the serving certificate
// cert-manager issued for the revision (reloaded on rotation), and reports health and metrics.
// The webhook reads namespaces and trust-bundle ConfigMaps (metadata only) from a cache that has
// synced before it serves; the xDS server reads Services, EndpointSlices, Pods and Gateway API
// routes from its own.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/knit-mesh/knit/controlplane/identity"
	"github.com/knit-mesh/knit/controlplane/xds"
	"github.com/knit-mesh/knit/webhooks"
	"github.com/knit-mesh/knit/webhooks/injection"
)

type options struct {
	webhookHost                         string
	webhookPort                         int
	inject                              injection.Config
	proxyResources                      string
	revision, trustDomain, tlsDir       string
	issuerName, issuerKind, issuerGroup string
	healthAddr                          string
	// debugAddr serves /debug/pprof when set (meant for loopback: profiling, the scale bench).
	debugAddr   string
	xdsAddr     string
	xdsDebounce time.Duration
	// namespaces is the webhook's view of namespaces and trust bundles (a cache in main).
	namespaces webhooks.NamespaceReader
	// discovery builds the xDS server once the serving certificate is loaded; nil serves none.
	discovery func(*tls.Config, prometheus.Registerer) (runnable, error)
	identity  identityFlags
	// identityServer serves workload certificates when set (main builds it with API clients).
	identityServer *identity.Server
	metrics        *prometheus.Registry
	// podName is this replica's pod: the key of its report in the MeshRevision's status.
	podName string
}

type runnable interface{ Start(context.Context) error }

func main() {
	var o options
	flag.StringVar(&o.revision, "revision", "", "the MeshRevision this control plane serves")
	flag.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of workload identities")
	flag.StringVar(&o.tlsDir, "tls-dir", "/etc/knit/tls", "directory with the serving certificate (tls.crt, tls.key, ca.crt)")
	flag.StringVar(&o.issuerName, "issuer-name", "", "cert-manager issuer that signs workload certificates")
	flag.StringVar(&o.issuerKind, "issuer-kind", "Issuer", "Issuer or ClusterIssuer")
	flag.StringVar(&o.issuerGroup, "issuer-group", "cert-manager.io", "group of the issuer")
	flag.StringVar(&o.healthAddr, "health-addr", ":15014", "address of /healthz and /readyz")
	flag.StringVar(&o.debugAddr, "debug-addr", "", "address of /debug/pprof (e.g. 127.0.0.1:15015); empty serves none")
	flag.StringVar(&o.xdsAddr, "xds-addr", fmt.Sprintf(":%d", xds.Port), "address of the xDS (delta ADS over gRPC with TLS) server")
	flag.DurationVar(&o.xdsDebounce, "xds-debounce", 100*time.Millisecond, "how long the xDS server waits after a change for more before pushing")
	flag.StringVar(&o.podName, "pod-name", os.Getenv("POD_NAME"), "this control-plane pod's name, the key of its proxies' report in the MeshRevision's status (empty: no report)")
	flag.StringVar(&o.webhookHost, "webhook-host", "", "address the injection webhook binds to (default: all of the pod's)")
	flag.IntVar(&o.webhookPort, "webhook-port", 8443, "port of the injection webhook (HTTPS)")
	flag.StringVar(&o.inject.ProxyImage, "proxy-image", "", "image of the injected knit-proxy")
	flag.StringVar(&o.inject.ProxyVersion, "proxy-version", "", "mesh version of the injected proxy")
	flag.StringVar(&o.inject.LogLevel, "proxy-log-level", "info", "log level of injected proxies")
	flag.StringVar(&o.proxyResources, "proxy-resources", "{}", "resources of injected proxies, as JSON ResourceRequirements")
	flag.StringVar(&o.inject.AccessLogFormat, "access-log-format", "Off", "access log format of injected proxies")
	flag.StringVar(&o.inject.ControlPlane, "discovery-address", "", "host:port of this revision's xDS server, for injected proxies")
	flag.StringVar(&o.inject.MTLSMode, "mtls-mode", "PERMISSIVE", "inbound mTLS mode of injected proxies: STRICT or PERMISSIVE (mtls.mode)")
	flag.StringVar(&o.inject.TracingEndpoint, "tracing-endpoint", "", "OTLP/gRPC collector host:port injected proxies export spans to (empty: none)")
	flag.Func("tracing-sampling-percent", "percent of new traces injected proxies sample, 0 to 100", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 || n > 100 {
			return fmt.Errorf("%q is not a whole number from 0 to 100", v)
		}
		o.inject.TracingSamplingPercent = int32(n)
		return nil
	})
	flag.BoolFunc("no-proxy-metrics", "injected proxies serve no /metrics (observability.metrics.enabled: false)", func(string) error {
		o.inject.MetricsDisabled = true
		return nil
	})
	o.identity.register(flag.CommandLine)
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zopts)))
	log := ctrl.Log.WithName("controlplane").WithValues("revision", o.revision)
	if limit, err := setMemoryLimit(os.Getenv("GOMEMLIMIT"), os.Getenv(memoryLimitEnv)); err != nil {
		log.Error(err, "memory limit not applied")
	} else if limit > 0 {
		log.Info("Go heap kept under the container's memory limit", "softLimitBytes", limit)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	restConfig, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "no API server configuration")
		os.Exit(1)
	}
	if o.namespaces, err = webhooks.WatchNamespaces(ctx, log, restConfig); err != nil {
		log.Error(err, "control plane stopped")
		os.Exit(1)
	}
	if o.discovery, err = discovery(ctx, log, restConfig, o); err != nil {
		log.Error(err, "control plane stopped")
		os.Exit(1)
	}
	o.metrics = prometheus.NewRegistry()
	if o.identity.addr != "" {
		if o.identityServer, err = newIdentityServer(log, restConfig, o, o.metrics); err != nil {
			log.Error(err, "control plane stopped")
			os.Exit(1)
		}
	}
	if err := run(ctx, log, o); err != nil {
		log.Error(err, "control plane stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, log logr.Logger, o options) error {
	if o.revision == "" || o.inject.ProxyImage == "" {
		return errors.New("--revision and --proxy-image are required")
	}
	if o.namespaces == nil {
		return errors.New("no namespace reader")
	}
	if err := json.Unmarshal([]byte(o.proxyResources), &o.inject.Resources); err != nil {
		return fmt.Errorf("--proxy-resources: %w", err)
	}
	o.inject.Revision, o.inject.TrustDomain = o.revision, o.trustDomain
	watcher, err := certwatcher.New(filepath.Join(o.tlsDir, "tls.crt"), filepath.Join(o.tlsDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("loading the serving certificate from %s: %w", o.tlsDir, err)
	}
	go func() {
		if err := watcher.Start(ctx); err != nil {
			log.Error(err, "certificate watcher stopped")
		}
	}()

	hooks := webhook.NewServer(webhook.Options{
		Host: o.webhookHost, Port: o.webhookPort, CertDir: o.tlsDir, CertName: "tls.crt", KeyName: "tls.key",
	})
	cfg := o.inject
	hooks.Register(webhooks.InjectPath, webhooks.NewInjectionWebhook(&webhooks.PodInjector{
		Config:     func() (injection.Config, error) { return cfg, nil },
		Namespaces: o.namespaces,
	}))
	go func() {
		if err := hooks.Start(ctx); err != nil {
			log.Error(err, "webhook server stopped")
		}
	}()
	webhookStarted := hooks.StartedChecker()
	if o.identityServer != nil {
		if err := serveIdentity(ctx, log, o.identityServer, o.identity.addr, o.identity.limits, watcher.GetCertificate); err != nil {
			return err
		}
	}

	// One registry for the process: the identity server registered its metrics in main.
	reg := o.metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	xdsErr := make(chan error, 1)
	xdsStopped := make(chan struct{})
	if o.discovery != nil {
		srv, err := o.discovery(&tls.Config{GetCertificate: watcher.GetCertificate}, reg)
		if err != nil {
			return fmt.Errorf("xDS server: %w", err)
		}
		go func() {
			defer close(xdsStopped)
			if err := srv.Start(ctx); err != nil {
				xdsErr <- err
			}
		}()
	} else {
		close(xdsStopped)
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := webhookStarted(r); err != nil {
			http.Error(w, "injection webhook: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := servingCertValid(watcher, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{
		Addr:              o.healthAddr,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("health server: %w", srv.ListenAndServe()) }()
	if o.debugAddr != "" {
		debug := debugServer(o.debugAddr)
		go func() { errc <- fmt.Errorf("debug server: %w", debug.ListenAndServe()) }()
		defer debug.Close()
	}
	log.Info("serving", "health", o.healthAddr, "webhook", o.webhookPort, "xds", o.xdsAddr, "trustDomain", o.trustDomain,
		"issuer", fmt.Sprintf("%s/%s.%s", o.issuerKind, o.issuerName, o.issuerGroup))

	select {
	case err := <-errc:
		return err
	case err := <-xdsErr:
		return fmt.Errorf("xDS server: %w", err)
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), xdsStopTimeout)
		defer cancel()
		err := srv.Shutdown(shutdown)
		// The xDS server removes this pod's report on its proxies from the MeshRevision as it
		// stops. A process that exits before would leave the report counting the proxies it had
		// (some perhaps not up to date) in the Mesh's status.dataPlane until the report expires.
		select {
		case <-xdsStopped:
		case <-shutdown.Done():
			log.Info("the xDS server did not stop in time: its report on the MeshRevision expires instead of being removed", "waited", xdsStopTimeout)
		}
		return err
	}
}

// xdsStopTimeout bounds the wait for the servers to stop: the xDS server's graceful stop (5s) and
// its report's removal (5s), within the pod's termination grace period (30s).
const xdsStopTimeout = 15 * time.Second

// discovery wires the xDS server to the cluster: an informer cache (started here) for what it
// translates, a client for route status and TokenReviews.
func discovery(ctx context.Context, log logr.Logger, cfg *rest.Config, o options) (func(*tls.Config, prometheus.Registerer) (runnable, error), error) {
	informers, err := xds.NewCache(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the xDS cache: %w", err)
	}
	go func() {
		if err := informers.Start(ctx); err != nil {
			log.Error(err, "xDS cache stopped")
		}
	}()
	scheme, err := xds.Scheme()
	if err != nil {
		return nil, err
	}
	writer, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the status client: %w", err)
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the TokenReview client: %w", err)
	}
	var report *xds.ReportOptions
	if o.podName != "" && o.revision != "" {
		report = &xds.ReportOptions{Client: writer, Revision: o.revision, Pod: o.podName}
	} else {
		log.Info("no --pod-name (POD_NAME): the proxies connected to this replica are not reported on the Mesh")
	}
	return func(tlsConfig *tls.Config, reg prometheus.Registerer) (runnable, error) {
		return xds.New(xds.Options{
			Address:       o.xdsAddr,
			TLS:           tlsConfig,
			Authenticator: xds.TokenReviewer{Client: clientset},
			Reader:        informers,
			Informers:     informers,
			StatusWriter:  writer,
			TrustDomain:   o.trustDomain,
			Debounce:      o.xdsDebounce,
			Report:        report,
			Registry:      reg,
			Log:           log.WithName("xds"),
		})
	}, nil
}

// memoryLimitEnv carries the container's memory limit in bytes (the Deployment sets it from
// limits.memory with a resourceFieldRef).
const memoryLimitEnv = "KNIT_MEMORY_LIMIT"

// setMemoryLimit gives the Go runtime a soft memory limit of 90 % of the container's, so that
// the garbage collector works harder before the kernel kills the process, instead of letting
// the heap grow to twice what is live. An explicit GOMEMLIMIT wins; so does no limit at all.
func setMemoryLimit(gomemlimit, container string) (int64, error) {
	if gomemlimit != "" || container == "" {
		return 0, nil
	}
	bytes, err := strconv.ParseInt(container, 10, 64)
	if err != nil || bytes <= 0 {
		return 0, fmt.Errorf("%s=%q is not a number of bytes", memoryLimitEnv, container)
	}
	limit := bytes / 10 * 9
	debug.SetMemoryLimit(limit)
	return limit, nil
}

// debugServer serves the runtime profiles. Profiles take up to their "seconds" parameter to
// answer, so the write timeout leaves room for them.
func debugServer(addr string) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{
		Addr: addr, Handler: mux,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Minute,
		IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
	}
}

// servingCertValid says whether the certificate in use can serve now.
func servingCertValid(w *certwatcher.CertWatcher, now time.Time) error {
	cert, err := w.GetCertificate(nil)
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return fmt.Errorf("no serving certificate loaded: %v", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("serving certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
