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

package controllers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// injectorName names a revision's MutatingWebhookConfiguration: "knit-injector-v0-1-0".
func injectorName(rev *meshv1.MeshRevision) string {
	return "knit-injector-" + strings.TrimPrefix(rev.Name, meshv1.MeshName+"-")
}

// injectionArgs are the Mesh's injection settings a revision's control plane needs, passed
// as arguments so a change rolls the control plane.
func injectionArgs(mesh *meshv1.Mesh, proxyImage string, rev *meshv1.MeshRevision) ([]string, error) {
	resources, err := json.Marshal(mesh.Spec.Injection.ProxyResources)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--proxy-image=" + proxyImage,
		"--proxy-version=" + rev.Spec.Version,
		"--proxy-log-level=" + string(mesh.Spec.Injection.ProxyLogLevel),
		"--proxy-resources=" + string(resources),
		"--access-log-format=" + string(mesh.Spec.Observability.AccessLogFormat),
		"--mtls-mode=" + string(cmp.Or(mesh.Spec.MTLS.Mode, meshv1.MTLSPermissive)),
		fmt.Sprintf("--discovery-address=%s.%s.svc:%d", controlPlaneName(rev), rev.Spec.Namespace, portXDS),
	}
	// Only what differs from the defaults, so that a Mesh without them keeps the control
	// plane's arguments (and pods) of earlier operator releases.
	o := mesh.Spec.Observability
	if t := o.Tracing; t != nil && t.Endpoint != "" {
		args = append(args, "--tracing-endpoint="+t.Endpoint, fmt.Sprintf("--tracing-sampling-percent=%d", t.SamplingPercent))
	}
	if o.Metrics.Enabled != nil && !*o.Metrics.Enabled {
		args = append(args, "--no-proxy-metrics")
	}
	return append(args, identityArgs(mesh)...), nil
}

// desiredInjectorWebhooks selects the pods a revision injects: those in namespaces labelled
// knit.dev/rev=<revision>; and, for the active revision, those in namespaces labelled
// knit.dev/inject=enabled or matching spec.injection.namespaceSelector (without a revision
// label). The excluded namespaces (neverMeshed) never; pods labelled knit.dev/inject=false never.
func desiredInjectorWebhooks(mesh *meshv1.Mesh, rev *meshv1.MeshRevision, active bool, excluded []string, caBundle []byte) []admissionregistrationv1.MutatingWebhook {
	notExcluded := metav1.LabelSelectorRequirement{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: excluded}
	noRevision := metav1.LabelSelectorRequirement{Key: meshv1.LabelRevision, Operator: metav1.LabelSelectorOpDoesNotExist}

	webhook := func(name string, selector metav1.LabelSelector) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.FailurePolicyType(mesh.Spec.Injection.FailurePolicy)),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			// Short: a pod creation waits on it. Injection is idempotent and skips injected
			// pods, so being called again after other webhooks would change nothing.
			TimeoutSeconds:     ptr.To[int32](5),
			ReinvocationPolicy: ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{
					Namespace: rev.Spec.Namespace, Name: controlPlaneName(rev), Path: ptr.To("/inject"), Port: ptr.To[int32](443),
				},
				CABundle: caBundle,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
			NamespaceSelector: &selector,
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "knit.dev/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"},
			}}},
		}
	}

	hooks := []admissionregistrationv1.MutatingWebhook{webhook("rev.inject.knit.dev", metav1.LabelSelector{
		MatchLabels:      map[string]string{meshv1.LabelRevision: rev.Name},
		MatchExpressions: []metav1.LabelSelectorRequirement{notExcluded},
	})}
	if !active {
		return hooks
	}
	hooks = append(hooks, webhook(namespaceHookName, metav1.LabelSelector{
		MatchLabels:      map[string]string{meshv1.LabelInject: meshv1.InjectEnabled},
		MatchExpressions: []metav1.LabelSelectorRequirement{noRevision, notExcluded},
	}))
	if s := mesh.Spec.Injection.NamespaceSelector; s != nil {
		sel := *s.DeepCopy()
		sel.MatchExpressions = append(sel.MatchExpressions, noRevision, notExcluded,
			metav1.LabelSelectorRequirement{Key: meshv1.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{meshv1.InjectEnabled}})
		hooks = append(hooks, webhook("selector.inject.knit.dev", sel))
	}
	return hooks
}

// servingCert is what a revision's control plane serves with, from the Secret cert-manager
// writes: the CA that signed it (ca.crt) and the fingerprint of the certificate itself.
type servingCert struct {
	ca          []byte
	fingerprint string
}

// servingCertificate reads the revision's serving certificate Secret. Empty until cert-manager
// has issued it.
func (r *MeshRevisionReconciler) servingCertificate(ctx context.Context, rev *meshv1.MeshRevision) (servingCert, error) {
	var secret corev1.Secret
	key := client.ObjectKey{Namespace: rev.Spec.Namespace, Name: controlPlaneName(rev)}
	if err := r.APIReader.Get(ctx, key, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return servingCert{}, nil
		}
		return servingCert{}, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	out := servingCert{ca: secret.Data[cmmeta.TLSCAKey]}
	if crt := secret.Data[corev1.TLSCertKey]; len(crt) > 0 {
		sum := sha256.Sum256(crt)
		out.fingerprint = hex.EncodeToString(sum[:12])
	}
	return out, nil
}

// namespaceHookName is the webhook every active revision has: it selects namespaces labelled
// knit.dev/inject=enabled.
const namespaceHookName = "namespace.inject.knit.dev"

func hasNamespaceHooks(mwc *admissionregistrationv1.MutatingWebhookConfiguration) bool {
	for _, w := range mwc.Webhooks {
		if w.Name == namespaceHookName && len(w.ClientConfig.CABundle) > 0 {
			return true
		}
	}
	return false
}

// awaitsNamespaceHooks says whether the active revision's webhook configuration does not carry
// the namespace hooks yet, so the revision that had them must keep them a little longer.
func (r *MeshRevisionReconciler) awaitsNamespaceHooks(ctx context.Context, activeRevision string) (bool, error) {
	key := client.ObjectKey{Name: injectorName(&meshv1.MeshRevision{ObjectMeta: metav1.ObjectMeta{Name: activeRevision}})}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := r.Get(ctx, key, &mwc); client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", key.Name, err)
	}
	return !hasNamespaceHooks(&mwc), nil
}

// liveCABundle is the caBundle the API server uses for the configuration now.
func liveCABundle(mwc *admissionregistrationv1.MutatingWebhookConfiguration) []byte {
	for _, w := range mwc.Webhooks {
		if len(w.ClientConfig.CABundle) > 0 {
			return w.ClientConfig.CABundle
		}
	}
	return nil
}

// maxWebhookRoots bounds the caBundle: the current CA and those a rollout still depends on.
const maxWebhookRoots = 4

// webhookCABundle is the current serving CA, followed, until every control-plane pod was
// started with the current certificate (rolledOut), by the roots of the live bundle: a pod
// started earlier may still serve a certificate one of them signed (an issuerRef switch or a
// root rotation changes the CA at once, while pods pick the new certificate up later).
func webhookCABundle(current, live []byte, rolledOut bool) []byte {
	if rolledOut || len(live) == 0 {
		return current
	}
	out := bytes.Clone(current)
	seen := map[string]bool{}
	n := 0
	for _, c := range parseCertificates(current) {
		seen[string(c.Raw)] = true
		n++
	}
	for _, c := range parseCertificates(live) {
		if seen[string(c.Raw)] || n >= maxWebhookRoots {
			continue
		}
		seen[string(c.Raw)] = true
		n++
		out = append(out, encodePEM(c)...)
	}
	return out
}

// bundleHolds says whether every certificate of ca is in bundle.
func bundleHolds(bundle, ca []byte) bool {
	have := map[string]bool{}
	for _, c := range parseCertificates(bundle) {
		have[string(c.Raw)] = true
	}
	for _, c := range parseCertificates(ca) {
		if !have[string(c.Raw)] {
			return false
		}
	}
	return true
}

// webhookEndpointsReady says whether the control plane's Service has a ready endpoint with the
// webhook port: what the API server needs to call the webhook. The EndpointSlice controller
// marks an endpoint ready only once the pod's readiness probe passes, and the control plane is
// ready only while it serves a valid certificate.
func (r *MeshRevisionReconciler) webhookEndpointsReady(ctx context.Context, svc client.ObjectKey) (bool, string, error) {
	var slices discoveryv1.EndpointSliceList
	if err := r.List(ctx, &slices, client.InNamespace(svc.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return false, "", fmt.Errorf("listing EndpointSlices of Service %s: %w", svc, err)
	}
	ready := 0
	for _, slice := range slices.Items {
		if !hasPort(slice.Ports, "webhook") {
			continue
		}
		for _, ep := range slice.Endpoints {
			if ptr.Deref(ep.Conditions.Ready, true) {
				ready++
			}
		}
	}
	if ready == 0 {
		return false, "it has no ready endpoint", nil
	}
	return true, fmt.Sprintf("%d ready endpoint(s)", ready), nil
}

func hasPort(ports []discoveryv1.EndpointPort, name string) bool {
	for _, p := range ports {
		if ptr.Deref(p.Name, "") == name {
			return true
		}
	}
	return false
}

// meshObservability is what the Mesh asks of every proxy's reporting, as knit-proxy's
// environment carries it (gateway Deployments; sidecars get it through the injector's flags).
func meshObservability(mesh *meshv1.Mesh) injection.Observability {
	o := mesh.Spec.Observability
	out := injection.Observability{
		AccessLogFormat: cmp.Or(string(o.AccessLogFormat), "Off"),
		MetricsDisabled: o.Metrics.Enabled != nil && !*o.Metrics.Enabled,
	}
	if o.Tracing != nil && o.Tracing.Endpoint != "" {
		out.TracingEndpoint, out.TracingSamplingPercent = o.Tracing.Endpoint, o.Tracing.SamplingPercent
	}
	return out
}
