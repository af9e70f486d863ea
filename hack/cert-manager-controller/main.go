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

// Command cert-manager-controller runs the part of cert-manager's controller that knit's tests
// and local cluster use (the controllers imported in controllers.go). Every controller, issuer,
// client and informer is cert-manager's own code, taken from its Go module: this program only
// reads a few flags, builds cert-manager's controller context, optionally holds the
// leader-election Lease, and starts the selected controllers.
//
// It exists because upstream's command (cmd/controller) is a nested module the Go module proxy
// does not serve, and its Venafi issuer needs a module that cannot be fetched here; this binary
// imports neither. Build it with hack/build-cert-manager.sh, which stamps the version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

const (
	// leaseName is the Lease cert-manager's controller holds; knit's operator reads it to tell
	// whether cert-manager runs (controllers/certmanager.go).
	leaseName = "cert-manager-controller"

	// Lease timings, API client limits, workers and backoff are cert-manager's defaults.
	leaseDuration   = 60 * time.Second
	leaseRenewal    = 40 * time.Second
	leaseRetry      = 15 * time.Second
	livezLeaseGrace = 20 * time.Second
	apiQPS          = 20
	apiBurst        = 50
	workers         = 5
	minIssueBackoff = time.Hour
	maxIssueBackoff = 32 * time.Hour
)

// errReported marks a command-line error the flag package has already printed, with the usage.
var errReported = errors.New("invalid command line")

type options struct {
	kubeconfig               string
	clusterResourceNamespace string
	controllers              string
	leaderElect              bool
	leaderElectionNamespace  string
	metricsAddress           string
	healthzAddress           string
	version                  bool
}

// parseFlags reads the command line. The names are upstream's, so the manifests and scripts
// that start this binary would start upstream's too.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("cert-manager-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file of the API server; empty: the in-cluster configuration")
	fs.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", "kube-system",
		"namespace of the Secrets that ClusterIssuers refer to")
	fs.StringVar(&o.controllers, "controllers", "*",
		`controllers to run, comma-separated: "*" for all, "-name" to leave one out (e.g. "*,-certificaterequests-approver")`)
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "run only while holding the Lease "+leaseName)
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "kube-system", "namespace of the Lease "+leaseName)
	fs.StringVar(&o.metricsAddress, "metrics-listen-address", "0", `address of the Prometheus /metrics server; "0" or empty: none`)
	fs.StringVar(&o.healthzAddress, "internal-healthz-listen-address", "0",
		`address of the /livez server (fails when the Lease is lost); "0" or empty: none`)
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	klog.InitFlags(fs) // --v and the other logging flags cert-manager's logs honour
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %w", errReported, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case errors.Is(err, errReported):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	case o.version:
		// hack/build-cert-manager.sh compares this line with the pinned version.
		fmt.Printf("cert-manager-controller %s\n", util.AppVersion)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	err = run(ctx, o)
	stop()
	if err != nil {
		logf.Log.Error(err, "cert-manager controller stopped")
	}
	klog.Flush()
	if err != nil {
		os.Exit(1)
	}
}

// run serves until ctx ends or something fails; leaving the errgroup cancels everything else.
func run(ctx context.Context, o options) error {
	names, err := selectControllers(o.controllers, slices.Collect(maps.Keys(controller.Known())))
	if err != nil {
		return err
	}
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         o.kubeconfig,
		KubernetesAPIQPS:   apiQPS,
		KubernetesAPIBurst: apiBurst,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: o.clusterResourceNamespace},
		CertificateOptions: controller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: minIssueBackoff,
			CertificateRequestMaximumBackoffDuration: maxIssueBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("building cert-manager's controller context: %w", err)
	}
	// The informer factories and metrics live in the factory; every Build shares them.
	shared, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building cert-manager's controller context: %w", err)
	}

	g, ctx := errgroup.WithContext(ctx)
	livez := healthz.NewServer(livezLeaseGrace)
	if enabled(o.healthzAddress) {
		ln, err := net.Listen("tcp", o.healthzAddress)
		if err != nil {
			return fmt.Errorf("healthz server: %w", err)
		}
		g.Go(func() error { return livez.Start(ctx, ln) })
	}
	if enabled(o.metricsAddress) {
		ln, err := net.Listen("tcp", o.metricsAddress)
		if err != nil {
			return fmt.Errorf("metrics server: %w", err)
		}
		g.Go(func() error { return serve(ctx, shared.Metrics.NewServer(ln), ln) })
	}

	leading := make(chan struct{})
	if o.leaderElect {
		elector, err := newElector(shared.Client, o.leaderElectionNamespace, livez.LeaderHealthzAdaptor, leading)
		if err != nil {
			return err
		}
		g.Go(func() error {
			elector.Run(ctx)
			if ctx.Err() == nil {
				return fmt.Errorf("lost the Lease %s/%s", o.leaderElectionNamespace, leaseName)
			}
			return nil
		})
	} else {
		close(leading)
	}

	g.Go(func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-leading:
		}
		for _, name := range names {
			c, err := controller.Known()[name](factory)
			if err != nil {
				return fmt.Errorf("setting up controller %s: %w", name, err)
			}
			g.Go(func() error { return c.Run(workers, ctx) })
		}
		// Controllers ask the factories for their informers while being set up, so start the
		// factories only after all of them.
		shared.SharedInformerFactory.Start(ctx.Done())
		shared.KubeSharedInformerFactory.Start(ctx.Done())
		logf.FromContext(ctx).Info("controllers started", "controllers", names)
		return nil
	})
	return g.Wait()
}

// newElector competes for the Lease; leading is closed once it is held. Losing it ends Run.
func newElector(client kubernetes.Interface, namespace string, watchdog *leaderelection.HealthzAdaptor,
	leading chan<- struct{}) (*leaderelection.LeaderElector, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("leader election identity: %w", err)
	}
	return leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: host},
		},
		Name:            leaseName,
		LeaseDuration:   leaseDuration,
		RenewDeadline:   leaseRenewal,
		RetryPeriod:     leaseRetry,
		ReleaseOnCancel: true, // a stopped controller hands over at once
		WatchDog:        watchdog,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(leading) },
			OnStoppedLeading: func() {},
		},
	})
}

// serve runs srv on ln until ctx ends, then gives open requests a few seconds.
func serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	stopped := make(chan error, 1)
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- srv.Shutdown(shutdownCtx) //nolint:contextcheck // ctx has ended by now
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return <-stopped
}

func enabled(address string) bool { return address != "" && address != "0" }
