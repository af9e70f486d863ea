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
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/webhooks"
	"github.com/knit-mesh/knit/webhooks/injection"
)

var testInjectionConfig = injection.Config{
	Revision:     "default-v0-1-0",
	ProxyImage:   "knit.local/knit/proxy:v0.1.0",
	ProxyVersion: "v0.1.0",
	TrustDomain:  "cluster.local",
	ControlPlane: "knit-controlplane-v0-1-0.knit-system.svc:15010",
	LogLevel:     "info",
}

// injectionWebhookConfiguration selects pods as the mesh's injection webhook does: namespaces
// labelled knit.dev/inject=enabled, never kube-system or the control plane's, pods not opting
// out by label. envtest points it at the test process.
func injectionWebhookConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "knit-injector-test"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "namespace.inject.knit.dev",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			TimeoutSeconds:          ptr.To[int32](5),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Name: "knit-controlplane", Namespace: "knit-system", Path: ptr.To(webhooks.InjectPath)},
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{meshv1.LabelInject: meshv1.InjectEnabled},
				MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "knit-system"},
				}},
			},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: injection.AnnotationInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"},
			}}},
		}},
	}
}

func appPod(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intOrString("http")}}},
		}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func ensureNamespace(ctx context.Context, name string, labels map[string]string) {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := controllerutilCreateOrPatchLabels(ctx, ns, labels)
	Expect(err).NotTo(HaveOccurred())
}

// ensureMeshedNamespace labels a namespace for injection (plus extra labels; an empty value
// removes one) and writes its trust bundle, as the operator would for a Mesh. The bundle carries
// the operator's trust-bundle label so a Mesh reconciled in another spec adopts it.
func ensureMeshedNamespace(ctx context.Context, name string, extra map[string]string) {
	GinkgoHelper()
	labels := map[string]string{meshv1.LabelInject: meshv1.InjectEnabled}
	maps.Copy(labels, extra)
	ensureNamespace(ctx, name, labels)
	ensureTrustBundle(ctx, name)
}

func ensureTrustBundle(ctx context.Context, namespace string) {
	GinkgoHelper()
	bundle := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: injection.TrustBundleName, Namespace: namespace,
			Labels: map[string]string{meshv1.LabelTrustBundle: "true"}},
		Data: map[string]string{"ca.crt": "written by the test"},
	}
	if err := k8sClient.Create(ctx, bundle); !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}

// expectInjectionRefused checks that creating pod is refused by the injection webhook with a message
// containing each of the given parts.
func expectInjectionRefused(ctx context.Context, pod *corev1.Pod, parts ...string) {
	GinkgoHelper()
	err := k8sClient.Create(ctx, pod)
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	Expect(err.Error()).To(ContainSubstring(`admission webhook "namespace.inject.knit.dev" denied the request: knit-proxy injection:`))
	for _, part := range parts {
		Expect(err.Error()).To(ContainSubstring(part))
	}
}

func injected(p *corev1.Pod) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == injection.ProxyContainerName {
			return true
		}
	}
	return false
}

var _ = Describe("The injection webhook, called by the real API server", func() {
	ctx := context.Background()

	It("injects a pod created in a namespace labelled for injection", func() {
		ensureMeshedNamespace(ctx, "meshed", nil)
		pod := appPod("web")
		pod.Namespace = "meshed"
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())

		var stored corev1.Pod
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), &stored)).To(Succeed())
		Expect(injected(&stored)).To(BeTrue(), "stored pod has no knit-proxy")
		Expect(stored.Spec.InitContainers[0].Name).To(Equal(injection.InitContainerName))
		proxy := stored.Spec.InitContainers[1]
		Expect(proxy.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)), "a native sidecar")
		Expect(proxy.Env).To(ContainElement(corev1.EnvVar{Name: "KNIT_IDENTITY", Value: "spiffe://cluster.local/ns/meshed/sa/default"}))
		Expect(stored.Annotations).To(HaveKeyWithValue(injection.AnnotationInjectedRevision, "default-v0-1-0"))
		Expect(stored.Spec.Containers[0].ReadinessProbe.HTTPGet.Path).To(Equal("/app-health/app/readiness"))
		Expect(stored.Spec.Containers[0].ReadinessProbe.HTTPGet.Port.IntValue()).To(Equal(int(injection.AdminPort)))
	})

	It("leaves alone pods outside the mesh, in excluded namespaces, and opting out", func() {
		ensureNamespace(ctx, "unmeshed", nil)
		ensureNamespace(ctx, "kube-system", map[string]string{meshv1.LabelInject: meshv1.InjectEnabled})
		DeferCleanup(func() { ensureNamespace(ctx, "kube-system", map[string]string{meshv1.LabelInject: ""}) })
		ensureMeshedNamespace(ctx, "meshed", nil)

		for _, pod := range []*corev1.Pod{
			appPod("outside", func(p *corev1.Pod) { p.Namespace = "unmeshed" }),
			appPod("system", func(p *corev1.Pod) { p.Namespace = "kube-system" }),
			appPod("label-opt-out", func(p *corev1.Pod) {
				p.Namespace = "meshed"
				p.Labels = map[string]string{injection.AnnotationInject: "false"}
			}),
			appPod("annotation-opt-out", func(p *corev1.Pod) {
				p.Namespace = "meshed"
				p.Annotations = map[string]string{injection.AnnotationInject: "false"}
			}),
		} {
			Expect(k8sClient.Create(ctx, pod)).To(Succeed(), pod.Name)
			var stored corev1.Pod
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), &stored)).To(Succeed())
			Expect(injected(&stored)).To(BeFalse(), "%s/%s was injected", pod.Namespace, pod.Name)
		}
	})

	It("refuses a pod whose override annotation is malformed, naming the annotation", func() {
		ensureMeshedNamespace(ctx, "meshed", nil)
		pod := appPod("typo", func(p *corev1.Pod) {
			p.Namespace = "meshed"
			p.Annotations = map[string]string{injection.AnnotationProxyMemory: "lots"}
		})
		err := k8sClient.Create(ctx, pod)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(`annotation knit.dev/proxy-memory: "lots" is not a quantity`))
	})

	It("answers malformed AdmissionReviews with an error, and keeps serving", func() {
		ensureMeshedNamespace(ctx, "meshed", nil)
		host, port, certDir := env.WebhookServing()
		caPEM, err := os.ReadFile(filepath.Join(certDir, "tls.crt"))
		Expect(err).NotTo(HaveOccurred())
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM(caPEM)).To(BeTrue())
		httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		url := fmt.Sprintf("https://%s/inject", joinHostPort(host, port))

		for name, body := range map[string][]byte{
			"not JSON":         []byte("\x00\x01garbage"),
			"truncated":        []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"kind":"Pod"`),
			"no request":       []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
			"object not a pod": []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"2","kind":{"version":"v1","kind":"Pod"},"namespace":"meshed","object":{"spec":{"containers":"nope"}}}}`),
			"no object":        []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"3","kind":{"version":"v1","kind":"Pod"},"namespace":"meshed"}}`),
		} {
			resp, err := httpc.Post(url, "application/json", bytes.NewReader(body))
			Expect(err).NotTo(HaveOccurred(), name)
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var review admissionv1.AdmissionReview
			if json.Unmarshal(raw, &review) == nil && review.Response != nil {
				Expect(review.Response.Allowed).To(BeFalse(), "%s: %s", name, raw)
				Expect(review.Response.Result).NotTo(BeNil(), name)
				Expect(review.Response.Result.Message).NotTo(BeEmpty(), name)
			} else {
				Expect(resp.StatusCode).To(BeNumerically(">=", 400), "%s: %d %s", name, resp.StatusCode, raw)
			}
		}

		pod := appPod("after-garbage", func(p *corev1.Pod) { p.Namespace = "meshed" })
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		Expect(injected(pod)).To(BeTrue())
	})
})
