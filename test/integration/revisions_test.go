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
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// selectedLabel meshes the namespaces of these specs through spec.injection.namespaceSelector:
// the suite's own test webhook (knit-injector-test) selects knit.dev/inject=enabled, and would
// inject first.
var selectedLabel = map[string]string{"test.knit.dev/meshed": "true"}

func meshSelecting() *meshv1.Mesh {
	m := sampleMesh()
	m.Spec.Injection.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selectedLabel}
	return m
}

func webhookNames(ctx context.Context, revision string) func(Gomega) []string {
	return func(g Gomega) []string {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		name := "knit-injector-" + revision[len(meshv1.MeshName)+1:]
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: name}, &mwc)).To(Succeed())
		var names []string
		for _, w := range mwc.Webhooks {
			names = append(names, w.Name)
		}
		return names
	}
}

var podSeq atomic.Int64

// createPod creates a pod in ns and returns the revision that injected it ("" for none).
func createPod(ctx context.Context, ns string) (string, error) {
	pod := appPod(fmt.Sprintf("p%d", podSeq.Add(1)), func(p *corev1.Pod) { p.Namespace = ns })
	if err := k8sClient.Create(ctx, pod); err != nil {
		return "", err
	}
	if !injected(pod) {
		return "", nil
	}
	return pod.Annotations[injection.AnnotationInjectedRevision], nil
}

func patchMesh(ctx context.Context, mutate func(*meshv1.Mesh)) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		m := getMesh(g)
		patch := client.MergeFrom(m.DeepCopy())
		mutate(m)
		g.Expect(k8sClient.Patch(ctx, m, patch)).To(Succeed())
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

var _ = Describe("Injection across a mesh upgrade", Ordered, func() {
	const (
		ns        = "upgrade-shop"
		revision2 = "default-v0-2-0"
	)
	ctx := context.Background()
	var first *controlPlane

	BeforeAll(func() {
		deleteMesh(ctx)
		Expect(k8sClient.Create(ctx, meshSelecting())).To(Succeed())
		DeferCleanup(func() { deleteMesh(ctx) })
		DeferCleanup(standins.stopAll) // before the Mesh goes (cleanups run last-in first-out)
		first = standins.start(ctx, revision)
		ensureNamespace(ctx, ns, selectedLabel)
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonAllReady)
		}).WithTimeout(60 * time.Second).Should(Succeed())
		// The API server matches webhook namespace selectors against its own namespace cache, which
		// may not have seen the label yet: the first pods can be admitted before it has.
		Eventually(func() (string, error) { return createPod(ctx, ns) }).WithTimeout(10 * time.Second).Should(Equal(revision))
	})

	It("stays Ready, and not Degraded, through a control-plane scale-up and rollout", func() {
		w, err := client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		wctx, stopWatching := context.WithCancel(ctx)
		var seen []string
		var mu sync.Mutex
		record := func(m *meshv1.Mesh) {
			for _, c := range m.Status.Conditions {
				if (c.Type == meshv1.ConditionReady && c.Status != metav1.ConditionTrue) ||
					(c.Type == meshv1.ConditionDegraded && c.Status == metav1.ConditionTrue) {
					mu.Lock()
					seen = append(seen, fmt.Sprintf("%s=%s: %s", c.Type, c.Status, c.Message))
					mu.Unlock()
				}
			}
		}
		watching, watched := make(chan struct{}), make(chan struct{})
		var once sync.Once
		go func() {
			defer close(watched)
			// A watch the API server ends (its cache lagging behind etcd under load) is opened
			// again; a new watch starts with the Mesh as it is.
			for wctx.Err() == nil {
				// From the API server's watch cache as it is ("0"): an empty resourceVersion asks
				// for the newest, which a lagging cache may refuse.
				wi, err := w.Watch(wctx, &meshv1.MeshList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: "0"}})
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for ev := range wi.ResultChan() {
					m, ok := ev.Object.(*meshv1.Mesh)
					if !ok {
						break
					}
					once.Do(func() { close(watching) })
					record(m)
				}
				wi.Stop()
			}
		}()
		Eventually(watching).WithTimeout(10 * time.Second).Should(BeClosed())

		first.hold() // the Deployment controller is slow to roll the new generation
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.ControlPlane.Replicas = 3 })
		Eventually(func(g Gomega) string {
			m := getMesh(g)
			c := meta.FindStatusCondition(m.Status.Conditions, meshv1.ConditionAvailable)
			g.Expect(c).NotTo(BeNil())
			if strings.Contains(c.Message, "has 2 of 3 replicas available") {
				record(m) // the Mesh in the middle of the rollout, whatever the watch saw
			}
			return c.Message
		}).WithTimeout(30 * time.Second).Should(ContainSubstring("has 2 of 3 replicas available"))
		first.release()
		Eventually(func(g Gomega) {
			m := getMesh(g)
			c := expectCondition(g, m, meshv1.ConditionAvailable, metav1.ConditionTrue, "")
			g.Expect(c.Message).To(ContainSubstring("has 3 of 3 replicas available"))
			g.Expect(c.Message).NotTo(ContainSubstring("rollout"))
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(30 * time.Second).Should(Succeed())
		stopWatching()
		<-watched
		mu.Lock()
		defer mu.Unlock()
		Expect(seen).To(BeEmpty(), "the Mesh reported trouble during normal work")
	})

	It("keeps injecting with the running revision while the new one cannot serve, and names its Deployment", func() {
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Version = "v0.2.0" })
		Eventually(func(g Gomega) {
			certReady(g, revisionServiceKey(revision2))
			m := getMesh(g)
			c := expectCondition(g, m, meshv1.ConditionUpgrading, metav1.ConditionTrue, meshv1.ReasonRevisionNotServing)
			g.Expect(c.Message).To(ContainSubstring("Deployment knit-system/knit-controlplane-v0-2-0 has 0 of 3 replicas available"))
			g.Expect(c.Message).To(ContainSubstring("MeshRevision default-v0-1-0 keeps injecting"))
			g.Expect(m.Status.ActiveRevision).To(Equal(revision))
			// The new revision's webhook exists, for its own namespaces only.
			g.Expect(webhookNames(ctx, revision2)(g)).To(Equal([]string{"rev.inject.knit.dev"}))
		}).WithTimeout(90 * time.Second).Should(Succeed())

		for range 5 {
			Expect(createPod(ctx, ns)).To(Equal(revision), "a pod created while %s cannot serve", revision2)
		}
		Expect(webhookNames(ctx, revision)(Default)).To(ContainElements("namespace.inject.knit.dev", "selector.inject.knit.dev"))
	})

	It("moves injection to the new revision once it serves, and the old revision's namespace webhooks go", func() {
		standins.start(ctx, revision2)
		Eventually(func(g Gomega) {
			m := getMesh(g)
			g.Expect(m.Status.ActiveRevision).To(Equal(revision2))
			g.Expect(webhookNames(ctx, revision2)(g)).To(ConsistOf("rev.inject.knit.dev", "namespace.inject.knit.dev", "selector.inject.knit.dev"))
			g.Expect(webhookNames(ctx, revision)(g)).To(Equal([]string{"rev.inject.knit.dev"}))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(createPod(ctx, ns)).To(Equal(revision2))

		By("keeping the old revision for the namespaces that name it")
		ensureNamespace(ctx, "pinned-shop", map[string]string{meshv1.LabelRevision: revision})
		DeferCleanup(func() { ensureNamespace(ctx, "pinned-shop", map[string]string{meshv1.LabelRevision: ""}) })
		// The webhook admits pods once the namespace's trust bundle exists.
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: "pinned-shop", Name: "knit-trust-bundle"}, &corev1.ConfigMap{})
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(createPod(ctx, "pinned-shop")).To(Equal(revision))
	})

	It("removes the selector webhook when injection.namespaceSelector is removed", func() {
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Injection.NamespaceSelector = nil })
		Eventually(webhookNames(ctx, revision2)).WithTimeout(30 * time.Second).
			Should(ConsistOf("rev.inject.knit.dev", "namespace.inject.knit.dev"))
		Expect(createPod(ctx, ns)).To(BeEmpty(), "a pod in a namespace the removed selector matched")
	})

	It("names a namespace labelled for a revision that does not exist", func() {
		ensureNamespace(ctx, "stale-shop", map[string]string{meshv1.LabelRevision: "default-v0-0-7"})
		DeferCleanup(func() { ensureNamespace(ctx, "stale-shop", map[string]string{meshv1.LabelRevision: ""}) })
		Eventually(func(g Gomega) {
			c := expectCondition(g, getMesh(g), meshv1.ConditionNamespacesInjected, metav1.ConditionFalse, meshv1.ReasonRevisionNotFound)
			g.Expect(c.Message).To(ContainSubstring("stale-shop (knit.dev/rev=default-v0-0-7)"))
			// A user's mislabel is not an outage of the mesh.
			expectCondition(g, getMesh(g), meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(createPod(ctx, "stale-shop")).To(BeEmpty())

		ensureNamespace(ctx, "stale-shop", map[string]string{meshv1.LabelRevision: revision2})
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionNamespacesInjected, metav1.ConditionTrue, meshv1.ReasonAsExpected)
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(createPod(ctx, "stale-shop")).To(Equal(revision2))
	})

	It("warns that a node drain refuses pods when one control-plane replica serves with failurePolicy Fail", func() {
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.ControlPlane.Replicas = 1 })
		Eventually(func(g Gomega) {
			m := getMesh(g)
			c := expectCondition(g, m, meshv1.ConditionHighlyAvailable, metav1.ConditionFalse, meshv1.ReasonSingleReplicaFailClosed)
			g.Expect(c.Message).To(ContainSubstring("a node drain may evict the only control-plane pod"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.ControlPlane.Replicas = 2 })
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionHighlyAvailable, metav1.ConditionTrue, meshv1.ReasonAsExpected)
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})
})
