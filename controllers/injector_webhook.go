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
	"context"
	"encoding/json"
	"fmt"
	"strings"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
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
	return []string{
		"--proxy-image=" + proxyImage,
		"--proxy-version=" + rev.Spec.Version,
		"--proxy-log-level=" + string(mesh.Spec.Injection.ProxyLogLevel),
		"--proxy-resources=" + string(resources),
		"--access-log-format=" + string(mesh.Spec.Observability.AccessLogFormat),
		fmt.Sprintf("--discovery-address=%s.%s.svc:%d", controlPlaneName(rev), rev.Spec.Namespace, portXDS),
	}, nil
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
	hooks = append(hooks, webhook("namespace.inject.knit.dev", metav1.LabelSelector{
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

// servingCA reads the CA that signed the revision's serving certificate, for the webhook's
// caBundle. Empty until cert-manager has issued it.
func (r *MeshRevisionReconciler) servingCA(ctx context.Context, rev *meshv1.MeshRevision) ([]byte, error) {
	var secret corev1.Secret
	key := client.ObjectKey{Namespace: rev.Spec.Namespace, Name: controlPlaneName(rev)}
	if err := r.APIReader.Get(ctx, key, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	return secret.Data[cmmeta.TLSCAKey], nil
}
