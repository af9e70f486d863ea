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
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

var _ = Describe("Namespaces injection depends on", Ordered, func() {
	ctx := context.Background()
	const certManagerNS = "cert-manager"
	excluded := []string{"kube-system", "kube-public", "kube-node-lease", cpNamespace, operatorNamespace, certManagerNS}

	BeforeAll(func() {
		deleteMesh(ctx)
		// cert-manager as a cluster runs it: its controller Deployment tells where it lives. (The
		// suite's cert-manager is a process; this object stands for the installed one.)
		for _, name := range []string{certManagerNS, "shop-by-selector"} {
			Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))).To(Succeed())
		}
		selector := map[string]string{"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/component": "controller"}
		Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "cert-manager", Namespace: certManagerNS, Labels: selector},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: selector},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: selector},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "controller", Image: "cert-manager-controller"}}},
				},
			},
		}))).To(Succeed())

		m := sampleMesh()
		m.Spec.Injection.NamespaceSelector = &metav1.LabelSelector{} // every namespace
		m.Spec.Injection.FailurePolicy = meshv1.FailurePolicyFail
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
	})
	AfterAll(func() {
		deleteMesh(ctx)
		Expect(k8sClient.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "cert-manager", Namespace: certManagerNS}})).To(Succeed())
	})

	It("are never selected by a webhook, even by an empty namespaceSelector with failurePolicy Fail", func() {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit-injector-v0-1-0"}, &mwc)).To(Succeed())
			g.Expect(mwc.Webhooks).To(HaveLen(3))
			g.Expect(getMesh(g).Status.ExcludedNamespaces).To(ConsistOf(excluded))
		}).WithTimeout(90 * time.Second).Should(Succeed())

		// Evaluate each webhook's namespaceSelector against the namespaces as the API server
		// stores them (with their kubernetes.io/metadata.name label), as the API server does.
		for _, name := range append(excluded, "shop-by-selector") {
			var ns corev1.Namespace
			if err := k8sClient.Get(ctx, client.ObjectKey{Name: name}, &ns); apierrors.IsNotFound(err) {
				ns = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelMetadataName: name}}}
			} else {
				Expect(err).NotTo(HaveOccurred())
			}
			selected := false
			for _, w := range mwc.Webhooks {
				Expect(*w.FailurePolicy).To(Equal(admissionregistrationv1.Fail))
				sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
				Expect(err).NotTo(HaveOccurred())
				selected = selected || sel.Matches(labels.Set(ns.Labels))
			}
			Expect(selected).To(Equal(name == "shop-by-selector"), "namespace %s selected by a knit webhook", name)
		}
	})

	It("get no trust bundle, while a namespace the selector meshes does", func() {
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: "shop-by-selector", Name: "knit-trust-bundle"}, &corev1.ConfigMap{})).To(Succeed())
		}).WithTimeout(60 * time.Second).Should(Succeed())
		for _, ns := range []string{certManagerNS, operatorNamespace, "kube-system", "kube-public", "kube-node-lease"} {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "knit-trust-bundle"}, &corev1.ConfigMap{})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "trust bundle in %s: %v", ns, err)
		}
	})

	It("let cert-manager's and the control plane's pods be created again, uninjected, and the mesh stays Ready", func() {
		// Restarting cert-manager or the control plane is creating their pods anew. No knit webhook
		// is called for them (none selects their namespaces), so they are admitted as they are.
		for _, ns := range []string{certManagerNS, cpNamespace} {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "restarted-", Namespace: ns},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}},
					TerminationGracePeriodSeconds: ptr.To[int64](0)},
			}
			Expect(k8sClient.Create(ctx, pod)).To(Succeed())
			Expect(pod.Spec.Containers).To(HaveLen(1))
			Expect(pod.Spec.InitContainers).To(BeEmpty())
			Expect(k8sClient.Delete(ctx, pod)).To(Succeed())
		}
		markAvailable(ctx, cpKey)
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})
})
