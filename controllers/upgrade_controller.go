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
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// The upgrade phase of the Mesh reconciler moves meshed workloads to the active revision
// (RevisionBased) and retires revisions no pod uses; it also counts proxies by version for
// status.dataPlane and the DataPlaneSkew condition. It reads pods and workloads from the API
// server without a cache and looks again every UpgradePollInterval while anything moves.

const (
	// DefaultRevisionGracePeriod is how long a revision no pod uses is kept before it is removed.
	DefaultRevisionGracePeriod = 30 * time.Second
	// DefaultUpgradePollInterval is how often the upgrade looks at its workloads while they move.
	DefaultUpgradePollInterval = 2 * time.Second
	// steadyPolls: status.dataPlane is refreshed every steadyPolls poll intervals when nothing
	// moves (30 s by default: pods are not watched).
	steadyPolls = 15
	// annotationUnusedSince on a MeshRevision records when the upgrade first saw no pod use it.
	annotationUnusedSince = "mesh.knit.dev/unused-since"
)

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;patch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=list
// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=list
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshrevisions,verbs=delete;patch

// upgradeState is what the upgrade phase found and did, for the status.
type upgradeState struct {
	pods *meshedPods
	// plan is set once injection has moved to the revision of spec.version.
	plan *upgradePlan
	// inUse counts, per previous revision, the pods that still run its proxy.
	inUse map[string]int
	// retiring maps a previous revision no pod uses to when it is removed.
	retiring map[string]time.Time
	// pinnedNamespaces maps a previous revision to the namespaces labelled for it.
	pinnedNamespaces map[string][]string
	// awaitingInjection: the active revision's webhook configuration does not inject the
	// meshed namespaces alone yet, so no workload is restarted.
	awaitingInjection bool
}

// reconcileUpgrade runs the upgrade and returns the revisions that remain.
func (r *MeshReconciler) reconcileUpgrade(ctx context.Context, st *meshState, revisions []meshv1.MeshRevision) []meshv1.MeshRevision {
	mesh := st.mesh
	active := findRevision(revisions, mesh.Status.ActiveRevision)
	if active == nil {
		return revisions
	}
	var nsList corev1.NamespaceList
	if err := r.List(ctx, &nsList); err != nil {
		st.fail(fmt.Errorf("listing namespaces: %w", err))
		return revisions
	}
	meshed, err := r.meshedNamespaces(ctx, mesh)
	if err != nil {
		st.fail(err)
		return revisions
	}
	var namespaces []corev1.Namespace
	up := &upgradeState{inUse: map[string]int{}, retiring: map[string]time.Time{}, pinnedNamespaces: map[string][]string{}}
	for _, ns := range nsList.Items {
		if rev := ns.Labels[meshv1.LabelRevision]; rev != "" && ns.DeletionTimestamp == nil {
			up.pinnedNamespaces[rev] = append(up.pinnedNamespaces[rev], ns.Name)
		}
		if slices.Contains(meshed, ns.Name) {
			namespaces = append(namespaces, ns)
		}
	}
	pods, err := r.findMeshedPods(ctx, namespaces)
	if err != nil {
		st.fail(err)
		return revisions
	}
	up.pods = pods
	st.upgrade = up

	poll := steadyPolls * r.pollInterval()
	if err := r.removeRetiredWebhooks(ctx); err != nil {
		st.fail(err)
	}
	moved, err := r.injectionMoved(ctx, active, revisions)
	if err != nil {
		st.fail(err)
	}
	up.awaitingInjection = st.desiredRevision == active.Name && !moved
	if st.desiredRevision == active.Name && moved {
		plan, err := r.moveWorkloads(ctx, st, active, pods.workloads)
		if err != nil {
			st.fail(err)
		}
		up.plan = plan
		if plan != nil && (plan.pending() || len(plan.inProgress) > 0) {
			poll = r.pollInterval()
		}
	}
	if len(revisions) > 1 || active.Status.Version != active.Spec.Version {
		poll = r.pollInterval()
	}
	st.requeueAt(time.Now().Add(poll))

	var remaining []meshv1.MeshRevision
	for i := range revisions {
		rev := &revisions[i]
		if rev.Name == active.Name || rev.Name == st.desiredRevision {
			remaining = append(remaining, *rev)
			continue
		}
		retired, err := r.retireRevision(ctx, st, rev, up)
		if err != nil {
			st.fail(err)
		}
		if !retired {
			remaining = append(remaining, *rev)
		}
	}
	return remaining
}

// injectionMoved says whether the active revision's webhook configuration injects the meshed
// namespaces and no other revision's does any more: only then does a restarted pod get the
// active revision's proxy (webhooks are called in name order, and the first one injects).
func (r *MeshReconciler) injectionMoved(ctx context.Context, active *meshv1.MeshRevision, revisions []meshv1.MeshRevision) (bool, error) {
	for i := range revisions {
		rev := &revisions[i]
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		err := r.Get(ctx, client.ObjectKey{Name: injectorName(rev)}, &mwc)
		if client.IgnoreNotFound(err) != nil {
			return false, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", injectorName(rev), err)
		}
		if hasNamespaceHooks(&mwc) != (rev.Name == active.Name) {
			return false, nil
		}
	}
	return true, nil
}

func (r *MeshReconciler) pollInterval() time.Duration {
	if r.UpgradePollInterval > 0 {
		return r.UpgradePollInterval
	}
	return DefaultUpgradePollInterval
}

// moveWorkloads plans the RevisionBased move to the active revision and restarts the next batch.
func (r *MeshReconciler) moveWorkloads(ctx context.Context, st *meshState, active *meshv1.MeshRevision, ws []*workload) (*upgradePlan, error) {
	mesh := st.mesh
	var pdbs []policyv1.PodDisruptionBudget
	seen := map[string]bool{}
	for _, w := range ws {
		if seen[w.namespace] || w.pinned || w.on(active.Name) {
			continue
		}
		seen[w.namespace] = true
		var list policyv1.PodDisruptionBudgetList
		if err := r.APIReader.List(ctx, &list, client.InNamespace(w.namespace)); err != nil {
			return nil, fmt.Errorf("listing PodDisruptionBudgets in namespace %s: %w", w.namespace, err)
		}
		pdbs = append(pdbs, list.Items...)
	}
	u := mesh.Spec.Upgrade
	batchSize := int(u.BatchSize)
	if batchSize < 1 {
		batchSize = 5
	}
	plan := planUpgrade(ws, active.Name, batchSize, u.Paused, func(w *workload) []string { return disruptionBlocked(pdbs, w) })

	prev := mesh.Status.Upgrade
	batch := int32(0)
	if prev != nil && prev.TargetRevision == active.Name {
		batch = prev.Batch
	}
	if len(plan.next) > 0 {
		batch++
		var names []string
		for _, w := range plan.next {
			if err := restart(ctx, r.Client, w, active.Name); err != nil {
				return &plan, err
			}
			names = append(names, w.String())
			plan.inProgress = append(plan.inProgress, w)
		}
		log.FromContext(ctx).Info("upgrade batch started", "batch", batch, "revision", active.Name, "workloads", names)
		if r.Recorder != nil {
			r.Recorder.Eventf(mesh, nil, corev1.EventTypeNormal, "UpgradeBatch", fmt.Sprintf("RestartBatch%d-%s", batch, active.Name),
				"batch %d: restarting %s onto MeshRevision %s (%s)", batch, strings.Join(names, ", "), active.Name, active.Spec.Version)
		}
	}
	if plan.pending() || len(plan.inProgress) > 0 {
		s := &meshv1.UpgradeStatus{TargetRevision: active.Name, Batch: batch,
			Workloads: int32(plan.workloads), Moved: int32(plan.moved), BlockedByPDB: capList(plan.blocked), Stuck: capList(plan.stuck)}
		for _, w := range plan.inProgress {
			s.InProgress = append(s.InProgress, w.String())
		}
		s.InProgress = capList(s.InProgress)
		mesh.Status.Upgrade = s
	} else {
		mesh.Status.Upgrade = nil
	}
	return &plan, nil
}

// restart replaces the workload's pods as `kubectl rollout restart` does, and marks it as
// restarted for the revision.
func restart(ctx context.Context, c client.Client, w *workload, revision string) error {
	obj := w.obj
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationUpgradeTo] = revision
	obj.SetAnnotations(ann)
	tmpl := podTemplateOf(obj)
	if tmpl.Annotations == nil {
		tmpl.Annotations = map[string]string{}
	}
	tmpl.Annotations[annotationRestartedAt] = time.Now().Format(time.RFC3339)
	if err := c.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("restarting %s: %w", w, err)
	}
	return nil
}

// retireRevision removes a previous revision once no pod has used it for the grace period, and
// reports whether it did.
func (r *MeshReconciler) retireRevision(ctx context.Context, st *meshState, rev *meshv1.MeshRevision, up *upgradeState) (bool, error) {
	users := up.pods.byRevision[rev.Name]
	pinned := up.pinnedNamespaces[rev.Name]
	since := rev.Annotations[annotationUnusedSince]
	if users > 0 || len(pinned) > 0 {
		up.inUse[rev.Name] = users
		if since == "" {
			return false, nil
		}
		patch := client.MergeFrom(rev.DeepCopy())
		delete(rev.Annotations, annotationUnusedSince)
		return false, client.IgnoreNotFound(r.Patch(ctx, rev, patch))
	}
	t, err := time.Parse(time.RFC3339, since)
	if err != nil {
		t = time.Now()
		patch := client.MergeFrom(rev.DeepCopy())
		metav1.SetMetaDataAnnotation(&rev.ObjectMeta, annotationUnusedSince, t.UTC().Format(time.RFC3339))
		if err := r.Patch(ctx, rev, patch); err != nil {
			return false, client.IgnoreNotFound(err)
		}
	}
	grace := r.RevisionGracePeriod
	if grace == 0 {
		grace = DefaultRevisionGracePeriod
	}
	at := t.Add(grace)
	if time.Now().Before(at) {
		up.retiring[rev.Name] = at
		st.requeueAt(at)
		return false, nil
	}
	// The revision goes, and with it (owner references) its control plane; its webhook
	// configuration explicitly, so no pod creation is sent to a control plane on its way out.
	if err := r.Delete(ctx, rev); client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("removing MeshRevision %s: %w", rev.Name, err)
	}
	r.retired.Store(rev.Name, rev.UID)
	if err := r.removeRetiredWebhooks(ctx); err != nil {
		return true, err
	}
	log.FromContext(ctx).Info("removed a revision no pod uses", "revision", rev.Name, "version", rev.Spec.Version)
	if r.Recorder != nil {
		r.Recorder.Eventf(st.mesh, nil, corev1.EventTypeNormal, "RevisionRemoved", "Remove"+rev.Name,
			"MeshRevision %s (%s) removed: no pod has used it for %s", rev.Name, rev.Spec.Version, grace)
	}
	return true, nil
}

// removeRetiredWebhooks deletes the webhook configurations of revisions this operator removed.
// The garbage collector would too, but only after a while, and a reconcile of the revision that
// was under way when it went may have written its configuration once more.
func (r *MeshReconciler) removeRetiredWebhooks(ctx context.Context) error {
	var errs []error
	r.retired.Range(func(k, v any) bool {
		name, uid := k.(string), v.(types.UID)
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		key := client.ObjectKey{Name: injectorName(&meshv1.MeshRevision{ObjectMeta: metav1.ObjectMeta{Name: name}})}
		if err := r.Get(ctx, key, mwc); err != nil {
			if client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", key.Name, err))
			}
			return true
		}
		if owner := metav1.GetControllerOf(mwc); owner == nil || owner.UID != uid {
			return true // a revision of that name made anew owns it now
		}
		if err := r.Delete(ctx, mwc); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("removing MutatingWebhookConfiguration %s: %w", key.Name, err))
		}
		return true
	})
	return errors.Join(errs...)
}

// capList keeps a status list within its schema's MaxItems.
func capList(in []string) []string {
	if len(in) > 100 {
		return in[:100]
	}
	return in
}
