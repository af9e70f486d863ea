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
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// warnings returns the messages of events with the reason about the object named regarding.
func warnings(g Gomega, reason, regardingKind, regardingName string) []string {
	var events corev1.EventList
	g.Expect(k8sClient.List(context.Background(), &events)).To(Succeed())
	var out []string
	for _, e := range events.Items {
		if e.Reason == reason && e.InvolvedObject.Kind == regardingKind && e.InvolvedObject.Name == regardingName {
			out = append(out, e.Message)
		}
	}
	return out
}

var _ = Describe("Objects the operator's cache cannot see", Ordered, func() {
	ctx := context.Background()
	BeforeAll(func() {
		deleteMesh(ctx)
		Expect(k8sClient.Create(ctx, sampleMesh())).To(Succeed())
		Eventually(func(g Gomega) { certReady(g, cpKey) }).WithTimeout(90 * time.Second).Should(Succeed())
		markAvailable(ctx, cpKey)
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})
	AfterAll(func() {
		deleteMesh(ctx)
		for _, name := range []string{"own-bundle", "next-door"} { // they stay Terminating: no longer meshed
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))).To(Succeed())
		}
	})

	It("leaves a person's own knit-trust-bundle ConfigMap alone, says so once on its namespace, and the mesh stays Ready", func() {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "own-bundle"}})).To(Succeed())
		mine := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "knit-trust-bundle", Namespace: "own-bundle"},
			Data: map[string]string{"ca.crt": "a person's own"}}
		Expect(k8sClient.Create(ctx, mine)).To(Succeed())
		for _, name := range []string{"own-bundle", "next-door"} {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
			_, err := controllerutilCreateOrPatchLabels(ctx, ns, map[string]string{meshv1.LabelRevision: revision})
			Expect(err).NotTo(HaveOccurred())
		}

		Eventually(func(g Gomega) {
			g.Expect(warnings(g, meshv1.ReasonNameTaken, "Namespace", "own-bundle")).To(ConsistOf(
				ContainSubstring("ConfigMap own-bundle/knit-trust-bundle exists and was not made by knit")))
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: "next-door", Name: "knit-trust-bundle"}, &corev1.ConfigMap{})).To(Succeed())
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("reconciling again (a label change on the namespace): no second report, the ConfigMap untouched")
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "own-bundle"}}
		_, err := controllerutilCreateOrPatchLabels(ctx, ns, map[string]string{"team": "payments"})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionReconciled, metav1.ConditionTrue, "")
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(30 * time.Second).Should(Succeed())
		var events corev1.EventList
		Expect(k8sClient.List(ctx, &events)).To(Succeed())
		n := 0
		for _, e := range events.Items {
			if e.Reason == meshv1.ReasonNameTaken && e.InvolvedObject.Name == "own-bundle" {
				n++
				Expect(e.Series).To(BeNil(), "reported more than once")
				Expect(e.Count).To(BeNumerically("<=", 1))
			}
		}
		Expect(n).To(Equal(1))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(mine), mine)).To(Succeed())
		Expect(mine.Data).To(Equal(map[string]string{"ca.crt": "a person's own"}))
		Expect(mine.OwnerReferences).To(BeEmpty())
	})

	It("restores the labels a person stripped from one of knit's children", func() {
		var svc corev1.Service
		Expect(k8sClient.Get(ctx, cpKey, &svc)).To(Succeed())
		uid := svc.UID
		patch := client.MergeFrom(svc.DeepCopy())
		delete(svc.Labels, meshv1.LabelPartOf)
		Expect(k8sClient.Patch(ctx, &svc, patch)).To(Succeed())

		var bundle corev1.ConfigMap
		bundleKey := client.ObjectKey{Namespace: "next-door", Name: "knit-trust-bundle"}
		_, err := controllerutilCreateOrPatchLabels(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "next-door"}},
			map[string]string{meshv1.LabelRevision: revision})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error { return k8sClient.Get(ctx, bundleKey, &bundle) }).WithTimeout(30 * time.Second).Should(Succeed())
		patch = client.MergeFrom(bundle.DeepCopy())
		bundle.Labels = nil
		Expect(k8sClient.Patch(ctx, &bundle, patch)).To(Succeed())
		// A namespace label change makes the Mesh reconcile; the ConfigMap's own events are not seen.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "next-door"}}
		_, err = controllerutilCreateOrPatchLabels(ctx, ns, map[string]string{"touched": "yes"})
		Expect(err).NotTo(HaveOccurred())

		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, cpKey, &svc)).To(Succeed())
			g.Expect(svc.UID).To(Equal(uid), "the same Service, repaired, not a new one")
			g.Expect(svc.Labels).To(HaveKeyWithValue(meshv1.LabelPartOf, meshv1.PartOfValue))
			g.Expect(k8sClient.Get(ctx, bundleKey, &bundle)).To(Succeed())
			g.Expect(bundle.Labels).To(HaveKeyWithValue(meshv1.LabelTrustBundle, "true"))
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionReconciled, metav1.ConditionTrue, "")
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})
})
