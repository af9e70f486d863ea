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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// These specs are about pods that could not run meshed: the API server must apply the patch
// whatever the pod holds, and a pod that would fail later is refused now, saying why.
var _ = Describe("Injection, for pods that could not run meshed", func() {
	ctx := context.Background()

	It("injects a pod whose first init container runs a shell command with more args than knit's", func() {
		ensureMeshedNamespace(ctx, "meshed", nil)
		command := []string{"sh", "-c", "until nc -z db 5432; do sleep 1; done"}
		args := []string{"--a", "--b", "--c", "--d", "--e", "--f", "--g", "--h", "--i"}
		pod := appPod("shell-init", func(p *corev1.Pod) {
			p.Namespace = "meshed"
			p.Spec.InitContainers = []corev1.Container{
				{Name: "wait-for-db", Image: "busybox:1", Command: command, Args: args},
				{Name: "migrate", Image: "app:1", Command: []string{"/migrate", "--all", "--verbose"}},
			}
		})
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())

		var stored corev1.Pod
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), &stored)).To(Succeed())
		names := []string{}
		for _, c := range stored.Spec.InitContainers {
			names = append(names, c.Name)
		}
		Expect(names).To(Equal([]string{injection.InitContainerName, injection.ProxyContainerName, "wait-for-db", "migrate"}))
		Expect(stored.Spec.InitContainers[2].Command).To(Equal(command))
		Expect(stored.Spec.InitContainers[2].Args).To(Equal(args))
		Expect(stored.Spec.InitContainers[3].Command).To(Equal([]string{"/migrate", "--all", "--verbose"}))
	})

	It("refuses a pod with a container running as the proxy's UID, naming the container and the fix", func() {
		ensureMeshedNamespace(ctx, "meshed", nil)
		pod := appPod("proxy-uid", func(p *corev1.Pod) {
			p.Namespace = "meshed"
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
				Name: "sneaky", Image: "app:1", SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To(injection.ProxyUID)},
			})
		})
		expectInjectionRefused(ctx, pod, "container sneaky runs as UID 1337", "securityContext.runAsUser", "knit.dev/inject=false")
	})

	It("refuses a knit.dev/inject value it does not know, and injects \"true\"", func() {
		ensureMeshedNamespace(ctx, "meshed", nil)
		expectInjectionRefused(ctx, appPod("inject-no", func(p *corev1.Pod) {
			p.Namespace = "meshed"
			p.Annotations = map[string]string{injection.AnnotationInject: "no"}
		}), `annotation knit.dev/inject: "no" is not "true" or "false"`)
		expectInjectionRefused(ctx, appPod("inject-label-off", func(p *corev1.Pod) {
			p.Namespace = "meshed"
			p.Labels = map[string]string{injection.AnnotationInject: "off"}
		}), `label knit.dev/inject: "off" is not "true" or "false"`)

		pod := appPod("inject-true", func(p *corev1.Pod) {
			p.Namespace = "meshed"
			p.Annotations = map[string]string{injection.AnnotationInject: "true"}
		})
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		Expect(injected(pod)).To(BeTrue())
	})

	It("refuses a pod in a namespace whose Pod Security level refuses the init container, naming the level and the fix", func() {
		ensureMeshedNamespace(ctx, "psa-baseline", map[string]string{injection.LabelPodSecurityEnforce: "baseline"})
		// Leave no meshed namespace with a refusing level behind for the Mesh specs.
		DeferCleanup(func() { ensureNamespace(ctx, "psa-baseline", map[string]string{injection.LabelPodSecurityEnforce: ""}) })

		expectInjectionRefused(ctx, appPod("web", func(p *corev1.Pod) { p.Namespace = "psa-baseline" }),
			`namespace psa-baseline enforces Pod Security level "baseline"`,
			"pod-security.kubernetes.io/enforce=privileged", "knit.dev/inject=false")

		// The same pod kept out of the mesh meets baseline, and Pod Security admits it.
		optOut := appPod("web-unmeshed", func(p *corev1.Pod) {
			p.Namespace = "psa-baseline"
			p.Annotations = map[string]string{injection.AnnotationInject: "false"}
		})
		Expect(k8sClient.Create(ctx, optOut)).To(Succeed())
	})

	It("refuses a pod created before its namespace's trust bundle exists, and injects it as soon as the bundle does", func() {
		ensureNamespace(ctx, "bundle-pending", map[string]string{meshv1.LabelInject: meshv1.InjectEnabled})
		// A Mesh reconciled in another spec may have written a bundle here; envtest has no
		// garbage collector to remove it with the Mesh.
		stale := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: injection.TrustBundleName, Namespace: "bundle-pending"}}
		Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, stale))).To(Succeed())
		expectInjectionRefused(ctx, appPod("early", func(p *corev1.Pod) { p.Namespace = "bundle-pending" }),
			"namespace bundle-pending has no ConfigMap knit-trust-bundle yet", "create the pod again")

		// No waiting: what the webhook's cache has not seen yet is read from the API server.
		ensureTrustBundle(ctx, "bundle-pending")
		pod := appPod("early", func(p *corev1.Pod) { p.Namespace = "bundle-pending" })
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		Expect(injected(pod)).To(BeTrue())
	})
})

var _ = Describe("The Mesh, for meshed namespaces whose Pod Security level refuses injected pods", Ordered, func() {
	ctx := context.Background()
	BeforeAll(func() {
		deleteMesh(ctx)
		Expect(k8sClient.Create(ctx, sampleMesh())).To(Succeed())
	})
	AfterAll(func() {
		ensureNamespace(ctx, "psa-shop", map[string]string{meshv1.LabelInject: "", injection.LabelPodSecurityEnforce: ""})
		deleteMesh(ctx)
	})

	podSecurity := func(g Gomega) *metav1.Condition {
		var mesh meshv1.Mesh
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &mesh)).To(Succeed())
		c := meta.FindStatusCondition(mesh.Status.Conditions, meshv1.ConditionPodSecurityCompatible)
		g.Expect(c).NotTo(BeNil(), "no %s condition", meshv1.ConditionPodSecurityCompatible)
		return c
	}

	It("names them in PodSecurityCompatible=False, with the fix", func() {
		ensureNamespace(ctx, "psa-shop", map[string]string{
			meshv1.LabelInject: meshv1.InjectEnabled, injection.LabelPodSecurityEnforce: "restricted",
		})
		Eventually(func(g Gomega) {
			c := podSecurity(g)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(meshv1.ReasonPodSecurityRefusesInjection))
			g.Expect(c.Message).To(ContainSubstring("psa-shop (restricted)"))
			g.Expect(c.Message).To(ContainSubstring("pod-security.kubernetes.io/enforce=privileged"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("turns True once the namespace allows privileged pods", func() {
		ensureNamespace(ctx, "psa-shop", map[string]string{injection.LabelPodSecurityEnforce: "privileged"})
		Eventually(func(g Gomega) {
			c := podSecurity(g)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})
})
