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

package integration

import (
	"context"
	"os"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/controllers"
	"github.com/knit-mesh/knit/test/testenv"
)

// A cluster without cert-manager needs its own API server: the suite's has cert-manager.
var _ = Describe("The operator on a cluster without cert-manager", Ordered, func() {
	var (
		bare    *testenv.Env
		c       client.Client
		stop    context.CancelFunc
		mgrDone = make(chan error, 1)
	)
	ctx := context.Background()

	BeforeAll(func() {
		var err error
		bare, err = testenv.Start(testenv.Options{Out: os.Stdout})
		Expect(err).NotTo(HaveOccurred())
		c, err = client.New(bare.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		mgr, err := ctrl.NewManager(bare.Config, ctrl.Options{
			Scheme: scheme, Cache: controllers.CacheOptions(),
			Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
			// The suite's manager already registered controllers of these names in this process.
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		})
		Expect(err).NotTo(HaveOccurred())
		Expect((&controllers.MeshReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)).To(Succeed())
		var mctx context.Context
		mctx, stop = context.WithCancel(context.Background())
		go func() {
			defer GinkgoRecover()
			mgrDone <- mgr.Start(mctx)
		}()
		Expect(c.Create(ctx, sampleMesh())).To(Succeed())
	})
	AfterAll(func() {
		if stop != nil {
			stop()
			Eventually(mgrDone, 30*time.Second).Should(Receive(BeNil()))
		}
		if bare != nil {
			Expect(bare.Stop()).To(Succeed())
		}
	})

	It("reports DependenciesHealthy=False/CertManagerMissing with an install hint, and keeps running", func() {
		Eventually(func(g Gomega) {
			var m meshv1.Mesh
			g.Expect(c.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			cond := expectCondition(g, &m, meshv1.ConditionDependenciesHealthy, metav1.ConditionFalse, meshv1.ReasonCertManagerMissing)
			g.Expect(cond.Message).To(ContainSubstring("CustomResourceDefinition certificates.cert-manager.io"))
			g.Expect(cond.Message).To(ContainSubstring("install cert-manager"))
			expectCondition(g, &m, meshv1.ConditionCertificatesReady, metav1.ConditionFalse, meshv1.ReasonCertManagerMissing)
			ready := expectCondition(g, &m, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotReady)
			g.Expect(ready.Message).To(ContainSubstring("DependenciesHealthy=False (CertManagerMissing)"))
			// Said once, however many conditions it fails.
			g.Expect(strings.Count(ready.Message, "cert-manager is not installed")).To(Equal(1), ready.Message)
			g.Expect(len(ready.Message)).To(BeNumerically("<=", 1024))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Consistently(mgrDone, 2*time.Second).ShouldNot(Receive(), "the manager stopped")
	})

	It("recovers by itself once cert-manager's CRDs are installed", func() {
		Expect(bare.InstallCertManagerCRDs()).To(Succeed())
		Eventually(func(g Gomega) {
			var m meshv1.Mesh
			g.Expect(c.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			expectCondition(g, &m, meshv1.ConditionDependenciesHealthy, metav1.ConditionTrue, meshv1.ReasonAsExpected)
			// The trust chain is created now that cert-manager's kinds exist (no cert-manager
			// controller runs here, so it does not become Ready).
			var issuer cmapi.Issuer
			g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "knit-system", Name: "knit-selfsigned"}, &issuer)).To(Succeed())
			var cert cmapi.Certificate
			g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "knit-system", Name: "knit-controlplane-v0-1-0"}, &cert)).To(Succeed())
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})
})
