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
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// AnnotationUpgradeTo on a workload names the MeshRevision the upgrade restarted it for, so a
// restarted workload is waited for, not restarted again.
const AnnotationUpgradeTo = "mesh.knit.dev/upgrade-to"

// annotationRestartedAt is the pod-template annotation `kubectl rollout restart` sets: a change
// of it makes the workload's controller replace every pod, honouring its update strategy.
const annotationRestartedAt = "kubectl.kubernetes.io/restartedAt"

// workload is one meshed Deployment, StatefulSet or DaemonSet as an upgrade sees it.
type workload struct {
	kind      string // deploy, sts or ds, as kubectl abbreviates them
	namespace string
	name      string
	obj       client.Object
	podLabels map[string]string
	// revisions counts its pods per injecting MeshRevision.
	revisions map[string]int
	// pinned: knit.dev/rev on its namespace or on the workload; an upgrade does not move it.
	pinned bool
	// rolledOut: its controller reports every pod on the current template and available.
	rolledOut bool
	// stalled: its controller gave up on its rollout (a Deployment past its progress deadline).
	stalled bool
	// restartedFor is AnnotationUpgradeTo: the revision an upgrade last restarted it for.
	restartedFor string
}

func (w *workload) String() string { return fmt.Sprintf("%s/%s in ns %s", w.kind, w.name, w.namespace) }

// on says whether every pod of the workload runs the revision's proxy, and nothing is rolling.
func (w *workload) on(revision string) bool {
	return w.rolledOut && len(w.revisions) == 1 && w.revisions[revision] > 0
}

// meshedPods is what the pods of the meshed namespaces say about the data plane.
type meshedPods struct {
	// byRevision counts pods per injecting revision; byVersion per proxy version.
	byRevision map[string]int
	byVersion  map[string]int
	total      int
	// ready counts the pods whose Ready condition is True.
	ready int
	// unmanaged counts, per revision, pods no Deployment, StatefulSet or DaemonSet owns (bare
	// pods, Jobs): an upgrade cannot restart them, and they keep their revision in use.
	unmanaged map[string]int
	workloads []*workload
}

// findMeshedPods reads the injected pods of the meshed namespaces, and the workloads that own
// them. It reads the API server directly: the operator caches no pods or user workloads.
func (r *MeshReconciler) findMeshedPods(ctx context.Context, namespaces []corev1.Namespace) (*meshedPods, error) {
	out := &meshedPods{byRevision: map[string]int{}, byVersion: map[string]int{}, unmanaged: map[string]int{}}
	for i := range namespaces {
		ns := &namespaces[i]
		var pods corev1.PodList
		if err := r.APIReader.List(ctx, &pods, client.InNamespace(ns.Name)); err != nil {
			return nil, fmt.Errorf("listing pods in namespace %s: %w", ns.Name, err)
		}
		owners := map[client.ObjectKey]map[string]int{} // workload (kind/name) -> pods per revision
		var replicaSets map[string]string               // ReplicaSet -> Deployment, read once needed
		for _, pod := range pods.Items {
			rev := pod.Annotations[injection.AnnotationInjectedRevision]
			if rev == "" || podFinished(&pod) {
				// A finished pod (a Job's, kept until its TTL) runs no proxy: it neither counts
				// nor keeps its revision in use.
				continue
			}
			out.total++
			if podReady(&pod) {
				out.ready++
			}
			out.byRevision[rev]++
			version := pod.Annotations[injection.AnnotationProxyVersion]
			if version == "" {
				version = "unknown"
			}
			out.byVersion[version]++
			owner := metav1.GetControllerOf(&pod)
			var key client.ObjectKey
			switch {
			case owner == nil:
			case owner.Kind == "ReplicaSet":
				if replicaSets == nil {
					var err error
					if replicaSets, err = r.replicaSetOwners(ctx, ns.Name); err != nil {
						return nil, err
					}
				}
				if d := replicaSets[owner.Name]; d != "" {
					key = client.ObjectKey{Namespace: "deploy", Name: d}
				}
			case owner.Kind == "StatefulSet":
				key = client.ObjectKey{Namespace: "sts", Name: owner.Name}
			case owner.Kind == "DaemonSet":
				key = client.ObjectKey{Namespace: "ds", Name: owner.Name}
			}
			if key.Name == "" {
				out.unmanaged[rev]++
				continue
			}
			if pod.DeletionTimestamp != nil {
				// On its way out: it still keeps its revision in use (counted above), but the
				// workload has replaced it, so it does not make the workload's rollout unfinished.
				continue
			}
			if owners[key] == nil {
				owners[key] = map[string]int{}
			}
			owners[key][rev]++
		}
		if len(owners) == 0 {
			continue
		}
		ws, err := r.readWorkloads(ctx, ns, owners)
		if err != nil {
			return nil, err
		}
		out.workloads = append(out.workloads, ws...)
	}
	sort.Slice(out.workloads, func(i, j int) bool { return out.workloads[i].String() < out.workloads[j].String() })
	return out, nil
}

// replicaSetOwners maps each ReplicaSet of a namespace to the Deployment that controls it.
func (r *MeshReconciler) replicaSetOwners(ctx context.Context, ns string) (map[string]string, error) {
	var list appsv1.ReplicaSetList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing ReplicaSets in namespace %s: %w", ns, err)
	}
	out := map[string]string{}
	for _, rs := range list.Items {
		if o := metav1.GetControllerOf(&rs); o != nil && o.Kind == "Deployment" {
			out[rs.Name] = o.Name
		}
	}
	return out, nil
}

// readWorkloads reads the workloads that own meshed pods (keyed kind/name) and their rollout state.
func (r *MeshReconciler) readWorkloads(ctx context.Context, ns *corev1.Namespace, owners map[client.ObjectKey]map[string]int) ([]*workload, error) {
	var out []*workload
	for key, revs := range owners {
		w := &workload{kind: key.Namespace, namespace: ns.Name, name: key.Name, revisions: revs}
		objKey := client.ObjectKey{Namespace: ns.Name, Name: key.Name}
		var err error
		switch w.kind {
		case "deploy":
			var d appsv1.Deployment
			if err = r.APIReader.Get(ctx, objKey, &d); err == nil {
				w.obj, w.podLabels = &d, d.Spec.Template.Labels
				w.rolledOut = rolledOut(&d)
				for _, c := range d.Status.Conditions {
					if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
						w.stalled = true
					}
				}
			}
		case "sts":
			var s appsv1.StatefulSet
			if err = r.APIReader.Get(ctx, objKey, &s); err == nil {
				want := ptr.Deref(s.Spec.Replicas, 1)
				st := s.Status
				w.obj, w.podLabels = &s, s.Spec.Template.Labels
				w.rolledOut = st.ObservedGeneration >= s.Generation && st.Replicas == want &&
					st.UpdatedReplicas == want && st.AvailableReplicas == want
			}
		case "ds":
			var d appsv1.DaemonSet
			if err = r.APIReader.Get(ctx, objKey, &d); err == nil {
				st := d.Status
				w.obj, w.podLabels = &d, d.Spec.Template.Labels
				w.rolledOut = st.ObservedGeneration >= d.Generation && st.UpdatedNumberScheduled == st.DesiredNumberScheduled &&
					st.NumberAvailable == st.DesiredNumberScheduled && st.NumberUnavailable == 0
			}
		}
		if client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("reading %s: %w", w, err)
		}
		if w.obj == nil {
			continue // deleted meanwhile; its pods go with it
		}
		w.restartedFor = w.obj.GetAnnotations()[AnnotationUpgradeTo]
		w.pinned = ns.Labels[meshv1.LabelRevision] != "" || w.obj.GetLabels()[meshv1.LabelRevision] != ""
		if w.restartedFor != "" && w.rolledOut && !w.on(w.restartedFor) {
			// The pods were listed before the workload was read: its rollout for the upgrade may
			// have finished in between, the old pods then gone. Count them again now, or the
			// upgrade would restart a workload that has just moved.
			if w.revisions, err = r.countPodRevisions(ctx, w); err != nil {
				return nil, fmt.Errorf("reading the pods of %s: %w", w, err)
			}
		}
		out = append(out, w)
	}
	return out, nil
}

// countPodRevisions counts the running pods the workload selects per injecting revision,
// leaving out pods on their way out and finished ones, as findMeshedPods does.
func (r *MeshReconciler) countPodRevisions(ctx context.Context, w *workload) (map[string]int, error) {
	var sel *metav1.LabelSelector
	switch o := w.obj.(type) {
	case *appsv1.Deployment:
		sel = o.Spec.Selector
	case *appsv1.StatefulSet:
		sel = o.Spec.Selector
	case *appsv1.DaemonSet:
		sel = o.Spec.Selector
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(w.namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, err
	}
	revs := map[string]int{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		rev := pod.Annotations[injection.AnnotationInjectedRevision]
		if rev == "" || pod.DeletionTimestamp != nil || podFinished(pod) {
			continue
		}
		revs[rev]++
	}
	return revs, nil
}

// disruptionBlocked names the PodDisruptionBudgets of the namespace that select the workload's
// pods and allow no disruption now.
func disruptionBlocked(pdbs []policyv1.PodDisruptionBudget, w *workload) []string {
	var out []string
	for _, pdb := range pdbs {
		if pdb.Namespace != w.namespace || pdb.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.podLabels)) {
			continue
		}
		if pdb.Status.DisruptionsAllowed < 1 {
			out = append(out, pdb.Name)
		}
	}
	return out
}

// podTemplateOf returns the pod template of a Deployment, StatefulSet or DaemonSet.
func podTemplateOf(obj client.Object) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template
	}
	panic(fmt.Sprintf("no pod template in %T", obj))
}

// podReady reads a pod's Ready condition.
func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podFinished reports whether all the pod's containers have stopped for good.
func podFinished(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}
