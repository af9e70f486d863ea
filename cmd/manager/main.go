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

// Command manager is the knit operator: it reconciles the cluster's Mesh into a running mesh.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/knit-mesh/knit/controllers"
	"github.com/knit-mesh/knit/internal/buildinfo"
)

func main() {
	var (
		metricsAddr    string
		secureMetrics  bool
		probeAddr      string
		leaderElection bool
		leaderElectNS  string
		secretsReader  string
		rotationHold   time.Duration
		testCertLife   time.Duration
		testGrace      time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443",
		"Address the metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS with authentication and authorization (TokenReview/SubjectAccessReview).")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElection, "leader-elect", false,
		"Elect a leader so that only one operator replica reconciles at a time.")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "",
		"Namespace of the leader-election Lease; defaults to the pod's namespace in-cluster.")
	flag.StringVar(&secretsReader, "secrets-reader-role", controllers.DefaultSecretsReaderRole,
		"ClusterRole the operator binds to its own ServiceAccount in the control-plane namespace to read Secrets there.")
	flag.DurationVar(&rotationHold, "root-rotation-hold", controllers.DefaultRootRotationHold,
		"How long a re-issued bootstrapped root must have been in every trust bundle before it signs: kubelet's ConfigMap propagation "+
			"to meshed pods (its --sync-frequency plus margin). Raise it with a longer kubelet sync period.")
	// Test only: e2e sets KNIT_TEST_WORKLOAD_CERT_DURATION on the operator's Deployment to watch
	// workload certificates renew within minutes; nothing in the Mesh API reaches it.
	testCertLifeDefault, err := durationEnv("KNIT_TEST_WORKLOAD_CERT_DURATION")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	flag.DurationVar(&testCertLife, "test-workload-cert-duration", testCertLifeDefault,
		"TEST ONLY: control planes issue workload certificates this short (below the Mesh API's 1h minimum), renewing at the Mesh's fraction of their life; "+
			"0 (the default) leaves trust.workloadCertDuration in force. Default from $KNIT_TEST_WORKLOAD_CERT_DURATION.")
	// Test only: e2e sets KNIT_TEST_REVISION_GRACE_PERIOD so an upgrade's previous revision goes
	// seconds after its last pod, not after the default 30 s.
	testGraceDefault, err := durationEnv("KNIT_TEST_REVISION_GRACE_PERIOD")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	flag.DurationVar(&testGrace, "test-revision-grace-period", testGraceDefault,
		"TEST ONLY: how long a MeshRevision no pod uses is kept before it is removed; 0 (the default) keeps it "+
			controllers.DefaultRevisionGracePeriod.String()+". Default from $KNIT_TEST_REVISION_GRACE_PERIOD.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

	if testCertLife != 0 {
		setupLog.Info("TEST ONLY: workload certificates are short-lived (--test-workload-cert-duration)", "duration", testCertLife.String())
	}
	if testGrace != 0 {
		setupLog.Info("TEST ONLY: unused MeshRevisions are removed after --test-revision-grace-period", "grace", testGrace.String())
	}
	if rotationHold <= 0 {
		fmt.Fprintln(os.Stderr, "--root-rotation-hold must be positive")
		os.Exit(2)
	}
	if err := run(metricsAddr, secureMetrics, probeAddr, leaderElection, leaderElectNS, secretsReader, rotationHold, testCertLife, testGrace); err != nil {
		setupLog.Error(err, "manager stopped")
		os.Exit(1)
	}
}

// durationEnv reads a duration from the environment; unset is zero.
func durationEnv(name string) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("$%s=%q is not a non-negative duration such as 90s", name, v)
	}
	return d, nil
}

func run(metricsAddr string, secureMetrics bool, probeAddr string, leaderElection bool, leaderElectNS, secretsReader string,
	rotationHold, testCertLife, testGrace time.Duration) error {
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        controllers.NewScheme(),
		Cache:                         controllers.CacheOptions(),
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElection,
		LeaderElectionID:              "manager.knit.dev",
		LeaderElectionNamespace:       leaderElectNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return err
	}

	if err := (&controllers.MeshReconciler{
		Client:            mgr.GetClient(),
		Recorder:          mgr.GetEventRecorder("knit-operator"),
		OperatorNamespace: os.Getenv("POD_NAMESPACE"),
		// Set from the pod's spec.serviceAccountName (config/manager).
		OperatorServiceAccount:   os.Getenv("SERVICE_ACCOUNT_NAME"),
		SecretsReaderRole:        secretsReader,
		RootRotationHold:         rotationHold,
		TestWorkloadCertDuration: testCertLife,
		RevisionGracePeriod:      testGrace,
	}).SetupWithManager(mgr); err != nil {
		return err
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}

	// The version tells which operator release runs, e.g. after an upgrade through OLM.
	ctrl.Log.WithName("setup").Info("starting manager", "version", buildinfo.Version, "leaderElection", leaderElection)
	return mgr.Start(ctrl.SetupSignalHandler())
}
