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
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// clusterNamespaces are Kubernetes' own namespaces: never meshed.
var clusterNamespaces = []string{metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease}

// certManagerControllerLabels are the labels cert-manager's Helm chart and static manifests put
// on its controller Deployment; the namespace of that Deployment is cert-manager's.
var certManagerControllerLabels = client.MatchingLabels{
	"app.kubernetes.io/name":      "cert-manager",
	"app.kubernetes.io/component": "controller",
}

// neverMeshed returns the namespaces whose pods are never injected and that never get a trust
// bundle, whatever their labels or spec.injection.namespaceSelector say: Kubernetes' own, the
// control plane's, the operator's, and cert-manager's. Meshing any of them could refuse the
// pods that injection itself depends on (with failurePolicy Fail, a restart of cert-manager or
// of the control plane would never come back). This is the one list every part of the operator
// uses.
//
// cert-manager's namespace is where its controller Deployment runs, read from the API server
// (reader must be uncached: the operator's cache holds only knit's Deployments). With no such
// Deployment (cert-manager runs outside the cluster) there is no namespace to add.
func neverMeshed(ctx context.Context, reader client.Reader, controlPlaneNS, operatorNS string) ([]string, error) {
	out := slices.Clone(clusterNamespaces)
	add := func(ns string) {
		if ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	add(controlPlaneNS)
	add(operatorNS)
	var deps appsv1.DeploymentList
	if err := reader.List(ctx, &deps, certManagerControllerLabels); err != nil {
		return nil, fmt.Errorf("finding cert-manager's namespace from its controller Deployment: %w", err)
	}
	var certManager []string
	for _, d := range deps.Items {
		certManager = append(certManager, d.Namespace)
	}
	slices.Sort(certManager)
	for _, ns := range certManager {
		add(ns)
	}
	return out, nil
}

// findExclusions records the never-meshed namespaces in status.excludedNamespaces, where people
// read them and the MeshRevision reconciler is woken when they change.
func (r *MeshReconciler) findExclusions(ctx context.Context, st *meshState) {
	excluded, err := neverMeshed(ctx, r.APIReader, st.mesh.Spec.ControlPlane.Namespace, r.OperatorNamespace)
	if err != nil {
		st.fail(err)
		return
	}
	st.mesh.Status.ExcludedNamespaces = excluded
	st.exclusionsKnown = true
}
