// cert-manager's cainjector, built from the github.com/cert-manager/cert-manager module (upstream's
// cmd/cainjector is a nested module the Go module proxy does not serve). Like upstream's command
// it runs cert-manager's own injectors (pkg/controller/cainjector) in a controller-runtime manager
// for mutating/validating webhook configurations, APIServices and CRDs, with the Certificate data
// source; upstream's flag names for the options it takes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	var (
		namespace      = flag.String("namespace", "", "only watch this namespace (default: all)")
		leaderElect    = flag.Bool("leader-elect", true, "use leader election")
		leaderNS       = flag.String("leader-election-namespace", "kube-system", "namespace of the leader election lease")
		certsSource    = flag.Bool("enable-certificates-data-source", true, "inject CA data from cert-manager Certificates")
		metricsAddress = flag.String("metrics-listen-address", "0.0.0.0:9402", "metrics address (0 disables)")
		version        = flag.Bool("version", false, "print the version and exit")
	)
	klog.InitFlags(flag.CommandLine)
	flag.Parse()
	if *version {
		fmt.Printf("cert-manager-cainjector %s\n", util.AppVersion)
		return
	}
	ctrl.SetLogger(klog.NewKlogr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *namespace, *leaderElect, *leaderNS, *certsSource, *metricsAddress); err != nil {
		klog.ErrorS(err, "cainjector failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, namespace string, leaderElect bool, leaderNS string, certsSource bool, metricsAddress string) error {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{kscheme.AddToScheme, cmscheme.AddToScheme, apiext.AddToScheme, apireg.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	var namespaces map[string]cache.Config
	if namespace != "" {
		namespaces = map[string]cache.Config{namespace: {}}
	}
	lease, renew, retry := 60*time.Second, 40*time.Second, 15*time.Second // upstream's defaults
	mgr, err := ctrl.NewManager(util.RestConfigWithUserAgent(ctrl.GetConfigOrDie(), "cainjector"), ctrl.Options{
		Scheme: scheme,
		// Upstream fails reads of types without a registered informer; the CA-from-Secret source
		// then reports "Secret is not cached" here, so informers start on first use instead.
		Cache:                         cache.Options{ReaderFailOnMissingInformer: false, DefaultNamespaces: namespaces},
		LeaderElection:                leaderElect,
		LeaderElectionNamespace:       leaderNS,
		LeaderElectionID:              "cert-manager-cainjector-leader-election",
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionResourceLock:    resourcelock.LeasesResourceLock,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddress},
	})
	if err != nil {
		return fmt.Errorf("error creating manager: %w", err)
	}
	if err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		Namespace:                    namespace,
		EnableCertificatesDataSource: certsSource,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	}); err != nil {
		return fmt.Errorf("failed to register injectors: %w", err)
	}
	return mgr.Start(ctx)
}
