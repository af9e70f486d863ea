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

// Package integration holds knit's integration suite: a real kube-apiserver + etcd with knit's
// CRDs, the real cert-manager controller, and knit's reconcilers in one manager.
package integration

import (
	"context"
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/knit-mesh/knit/controllers"
	"github.com/knit-mesh/knit/test/testenv"
	"github.com/knit-mesh/knit/webhooks"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// rootRotationHold is the operator's hold before a re-issued root signs: long enough that a
// spec can have a certificate signed within it on a loaded machine (a few seconds), short enough
// that the rotation specs do not wait minutes.
const rootRotationHold = 15 * time.Second

var (
	env       *testenv.Env
	k8sClient client.Client
	scheme    = controllers.NewScheme()
	cancelMgr context.CancelFunc
	// operatorConfig impersonates the operator's ServiceAccount: the manager runs with it.
	operatorConfig *rest.Config
	mgrDone        = make(chan error, 1)
	// suiteNamespaces is the injection webhook's namespace reader, shared with the control-plane
	// stand-ins, which serve the same webhook.
	suiteNamespaces webhooks.NamespaceReader
)

func TestIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Integration suite (real kube-apiserver, etcd, cert-manager)")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))

	var err error
	env, err = testenv.Start(testenv.Options{CertManager: true, Out: os.Stdout,
		MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{injectionWebhookConfiguration()}})
	Expect(err).NotTo(HaveOccurred())

	var suiteCtx context.Context
	suiteCtx, cancelMgr = context.WithCancel(context.Background())
	k8sClient, err = client.New(env.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	env.RouteServices(standins.dial)

	operatorConfig = installOperatorRBAC(context.Background(), k8sClient, env.Config)
	// The control-plane namespace of most specs exists before the Mesh, as a person may make it:
	// the operator never deletes it, and envtest (no namespace controller) could not finish that.
	Expect(k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "knit-system"}})).To(Succeed())
	mgr, err := ctrl.NewManager(operatorConfig, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	host, port, certDir := env.WebhookServing()
	server := webhook.NewServer(webhook.Options{Host: host, Port: port, CertDir: certDir})
	// The webhook reads namespaces as the control plane does: from its own cache, synced first.
	namespaces, err := webhooks.WatchNamespaces(suiteCtx, ctrl.Log.WithName("namespaces"), env.Config)
	Expect(err).NotTo(HaveOccurred())
	suiteNamespaces = namespaces
	server.Register(webhooks.InjectPath, webhooks.NewInjectionWebhook(&webhooks.PodInjector{
		Config:     func() (injection.Config, error) { return testInjectionConfig, nil },
		Namespaces: namespaces,
	}))
	Expect(mgr.Add(server)).To(Succeed())

	meshReconciler := suiteMeshReconciler(mgr.GetClient())
	meshReconciler.Recorder = mgr.GetEventRecorder("knit-operator")
	Expect(meshReconciler.SetupWithManager(mgr)).To(Succeed())

	go func() {
		defer GinkgoRecover()
		mgrDone <- mgr.Start(suiteCtx)
	}()
})

var _ = AfterSuite(func() {
	if cancelMgr != nil {
		cancelMgr()
		Eventually(mgrDone, 30*time.Second).Should(Receive(BeNil()))
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// ReportAfterEach points at the component logs when a spec fails.
var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() && env != nil {
		AddReportEntry("component logs", env.LogDir)
	}
})
