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
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// maxNamedNamespaces bounds the namespaces a condition message lists.
const maxNamedNamespaces = 10

// reportPodSecurity sets PodSecurityCompatible: False, naming them, when meshed namespaces
// enforce a Pod Security level that refuses injected pods. The injection webhook refuses such
// pods too; this says so before anyone creates one.
func (r *MeshReconciler) reportPodSecurity(ctx context.Context, st *meshState) {
	mesh := st.mesh
	set := func(status metav1.ConditionStatus, reason, format string, args ...any) {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionPodSecurityCompatible, status, reason, format, args...)
	}
	meshed, err := r.meshedNamespaces(ctx, mesh)
	if err != nil {
		st.fail(err)
		set(metav1.ConditionUnknown, meshv1.ReasonReconcileFailed, "%v", err)
		return
	}
	var refusing []string
	for _, name := range meshed {
		var ns corev1.Namespace
		if err := r.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
			if client.IgnoreNotFound(err) != nil {
				st.fail(fmt.Errorf("reading Namespace %s: %w", name, err))
			}
			continue
		}
		if level, refuses := injection.PodSecurityRefuses(ns.Labels); refuses {
			refusing = append(refusing, fmt.Sprintf("%s (%s)", name, level))
		}
	}
	if len(refusing) == 0 {
		set(metav1.ConditionTrue, meshv1.ReasonAsExpected, "no meshed namespace enforces a Pod Security level that refuses injected pods")
		return
	}
	slices.Sort(refusing)
	set(metav1.ConditionFalse, meshv1.ReasonPodSecurityRefusesInjection,
		"meshed namespaces enforce a Pod Security level that refuses injected pods (%s runs as root with NET_ADMIN and NET_RAW), "+
			"so the injection webhook refuses their pods: %s; label them %s=privileged, or take them out of the mesh",
		injection.InitContainerName, boundedList(refusing), injection.LabelPodSecurityEnforce)
}

// boundedList joins names, listing at most maxNamedNamespaces of them.
func boundedList(names []string) string {
	if len(names) <= maxNamedNamespaces {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxNamedNamespaces], ", "), len(names)-maxNamedNamespaces)
}
