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
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// NewScheme registers every kind the operator reads or writes.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(cmapi.AddToScheme(s))
	utilruntime.Must(meshv1.AddToScheme(s))
	utilruntime.Must(gatewayv1.Install(s))
	return s
}

// CacheOptions keep the operator's memory independent of cluster size: kinds that exist in
// every namespace are cached only when they carry knit's labels. cert-manager's kinds are not
// narrowed here: a restriction needs their CRDs at start-up, and the operator must start
// without cert-manager (it reports CertManagerMissing and recovers). Event handlers filter them.
func CacheOptions() cache.Options {
	ours := labels.SelectorFromSet(labels.Set{meshv1.LabelPartOf: meshv1.PartOfValue})
	byLabel := cache.ByObject{Label: ours}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		// The EndpointSlice controller copies the Service's labels, knit's among them.
		&discoveryv1.EndpointSlice{}: byLabel,
		// Only cert-manager's leader-election Lease tells the operator anything.
		&coordinationv1.Lease{}: {
			Namespaces: map[string]cache.Config{certManagerLease.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", certManagerLease.Name),
		},
		// Trust bundles and the parameters of spec.gateways' Gateways.
		&corev1.ConfigMap{}:                                     byLabel,
		&appsv1.Deployment{}:                                    byLabel,
		&corev1.Service{}:                                       byLabel,
		&corev1.ServiceAccount{}:                                byLabel,
		&policyv1.PodDisruptionBudget{}:                         byLabel,
		&autoscalingv2.HorizontalPodAutoscaler{}:                byLabel,
		&rbacv1.ClusterRole{}:                                   byLabel,
		&rbacv1.ClusterRoleBinding{}:                            byLabel,
		&rbacv1.RoleBinding{}:                                   byLabel,
		&admissionregistrationv1.MutatingWebhookConfiguration{}: byLabel,
	}}
}
