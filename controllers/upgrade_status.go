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
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
	"github.com/knit-mesh/knit/internal/versions"
)

// setUpgradeStatus sets Upgrading, DataPlaneSkew, status.version and status.dataPlane.
func (r *MeshReconciler) setUpgradeStatus(st *meshState, revisions []meshv1.MeshRevision) {
	mesh := st.mesh
	s := &mesh.Status
	set := func(t string, status metav1.ConditionStatus, reason, format string, args ...any) {
		conditions.Set(&s.Conditions, mesh.Generation, t, status, reason, format, args...)
	}
	active := findRevision(revisions, s.ActiveRevision)
	desired := findRevision(revisions, st.desiredRevision)
	up := st.upgrade
	var plan *upgradePlan
	if up != nil {
		plan = up.plan
	}
	var previous []string
	for _, rev := range revisions {
		if active == nil || rev.Name != active.Name {
			previous = append(previous, rev.Name)
		}
	}

	switch {
	case desired != nil && st.desiredRevision != s.ActiveRevision:
		_, why := revisionServes(desired)
		set(meshv1.ConditionUpgrading, metav1.ConditionTrue, meshv1.ReasonRevisionNotServing,
			"MeshRevision %s (%s) cannot serve yet: %s; MeshRevision %s keeps injecting until it can",
			desired.Name, desired.Spec.Version, why, s.ActiveRevision)
	case active != nil && active.Status.Version != "" && active.Status.Version != active.Spec.Version:
		set(meshv1.ConditionUpgrading, metav1.ConditionTrue, meshv1.ReasonRollingOutControlPlane,
			"the control plane of MeshRevision %s rolls to %s in place (Deployment %s/%s); running proxies keep their "+
				"version until their pods restart", active.Name, active.Spec.Version, active.Spec.Namespace, controlPlaneName(active))
	case up != nil && up.awaitingInjection && len(previous) > 0:
		set(meshv1.ConditionUpgrading, metav1.ConditionTrue, meshv1.ReasonMovingWorkloads,
			"MeshRevision %s (%s) serves; workloads are restarted onto it once its webhook configuration alone injects "+
				"the meshed namespaces (the previous revision's still does)", active.Name, active.Spec.Version)
	case plan != nil && (plan.pending() || len(plan.inProgress) > 0):
		reason, msg := meshv1.ReasonMovingWorkloads, progressMessage(mesh, active, plan)
		if mesh.Spec.Upgrade.Paused && len(plan.inProgress) == 0 {
			reason = meshv1.ReasonUpgradePaused
		}
		set(meshv1.ConditionUpgrading, metav1.ConditionTrue, reason, "%s", msg)
	case len(previous) > 0 && active != nil:
		var parts []string
		reason := meshv1.ReasonRetiringRevision
		for _, name := range previous {
			switch at, ok := up.retiringAt(name); {
			case ok:
				parts = append(parts, fmt.Sprintf("no pod uses MeshRevision %s: it is removed at %s", name, at.UTC().Format(time.RFC3339)))
			default:
				reason = meshv1.ReasonRevisionInUse
				parts = append(parts, fmt.Sprintf("MeshRevision %s still runs %s", name, up.inUseMessage(name)))
			}
		}
		set(meshv1.ConditionUpgrading, metav1.ConditionTrue, reason, "every workload that moves runs MeshRevision %s (%s); %s",
			active.Name, active.Spec.Version, strings.Join(parts, "; "))
	default:
		set(meshv1.ConditionUpgrading, metav1.ConditionFalse, meshv1.ReasonUpToDate, "one MeshRevision runs the mesh and every proxy it injected")
	}
	if len(revisions) == 1 && active != nil && meta.IsStatusConditionTrue(active.Status.Conditions, meshv1.ConditionAvailable) {
		switch {
		case s.Version == "":
			s.Version = active.Spec.Version // the first install runs once it serves
		case active.Status.Version != "":
			s.Version = active.Status.Version // an InPlace upgrade moves it once rolled out
		}
	}
	r.setDataPlane(st, active)
}

func (u *upgradeState) retiringAt(rev string) (time.Time, bool) {
	if u == nil {
		return time.Time{}, false
	}
	at, ok := u.retiring[rev]
	return at, ok
}

func (u *upgradeState) inUseMessage(rev string) string {
	if u == nil {
		return "pods (not counted yet)"
	}
	var parts []string
	if n := u.inUse[rev]; n > 0 {
		what := fmt.Sprintf("%d pod(s)", n)
		if m := u.pods.unmanaged[rev]; m > 0 {
			what += fmt.Sprintf(", %d of them without a Deployment, StatefulSet or DaemonSet to restart (bare pods, Jobs)", m)
		}
		parts = append(parts, what)
	}
	if ns := u.pinnedNamespaces[rev]; len(ns) > 0 {
		parts = append(parts, fmt.Sprintf("namespaces labelled knit.dev/rev=%s: %s", rev, strings.Join(ns, ", ")))
	}
	if len(parts) == 0 {
		return "pods"
	}
	return strings.Join(parts, " and ") + "; it is removed once none does"
}

// progressMessage tells a person where a RevisionBased upgrade stands, e.g. "12/40 workloads on
// v0.2.0 (MeshRevision default-v0-2-0), batch 3, waiting for deploy/web in ns shop".
func progressMessage(mesh *meshv1.Mesh, active *meshv1.MeshRevision, plan *upgradePlan) string {
	batch := int32(0)
	if mesh.Status.Upgrade != nil {
		batch = mesh.Status.Upgrade.Batch
	}
	msg := fmt.Sprintf("%d/%d workloads on %s (MeshRevision %s), batch %d", plan.moved, plan.workloads, active.Spec.Version, active.Name, batch)
	switch {
	case len(plan.inProgress) > 0:
		var names []string
		for _, w := range plan.inProgress {
			names = append(names, w.String())
		}
		msg += ", waiting for " + strings.Join(names, ", ")
	case mesh.Spec.Upgrade.Paused:
		msg += ", paused (spec.upgrade.paused): set it to false to resume; both revisions keep serving"
	}
	if plan.pinned > 0 {
		msg += fmt.Sprintf("; %d pinned with knit.dev/rev, not moved", plan.pinned)
	}
	if len(plan.blocked) > 0 {
		msg += "; not restarted: " + strings.Join(plan.blocked, ", ")
	}
	if len(plan.stuck) > 0 {
		msg += "; skipped: " + strings.Join(plan.stuck, ", ")
	}
	return msg
}

// setDataPlane counts proxies per version and sets DataPlaneSkew against the active revision's
// release.
func (r *MeshReconciler) setDataPlane(st *meshState, active *meshv1.MeshRevision) {
	mesh := st.mesh
	s := &mesh.Status
	if st.upgrade == nil || st.upgrade.pods == nil {
		return // not counted this time: keep what is known
	}
	pods := st.upgrade.pods
	dp := &meshv1.DataPlaneStatus{Proxies: int32(pods.total), Ready: int32(pods.ready)}
	var vs []string
	for v := range pods.byVersion {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		dp.Versions = append(dp.Versions, meshv1.ProxyVersionCount{Version: v, Proxies: int32(pods.byVersion[v])})
	}
	if len(dp.Versions) > 32 {
		dp.Versions = dp.Versions[:32]
	}
	for _, w := range pods.workloads {
		if w.pinned {
			dp.PinnedWorkloads++
		}
	}
	s.DataPlane = dp

	set := func(status metav1.ConditionStatus, reason, format string, args ...any) {
		conditions.Set(&s.Conditions, mesh.Generation, meshv1.ConditionDataPlaneSkew, status, reason, format, args...)
	}
	if active == nil {
		set(metav1.ConditionUnknown, meshv1.ReasonPending, "no MeshRevision runs the mesh yet")
		return
	}
	cp := active.Spec.Version
	behind, unsupported := 0, 0
	var details []string
	for _, v := range dp.Versions {
		n := versions.MinorsBehind(v.Version, cp)
		if n == 0 && !olderPatch(v.Version, cp) {
			continue
		}
		behind += int(v.Proxies)
		if n > 1 {
			unsupported += int(v.Proxies)
		}
		details = append(details, fmt.Sprintf("%d on %s", v.Proxies, v.Version))
	}
	switch {
	case unsupported > 0:
		set(metav1.ConditionTrue, meshv1.ReasonProxiesUnsupported,
			"%d of %d proxies run a release more than one minor behind the control plane's %s (%s), which it no longer "+
				"supports: restart their pods to move them", unsupported, pods.total, cp, strings.Join(details, ", "))
	case behind > 0:
		set(metav1.ConditionTrue, meshv1.ReasonProxiesBehind,
			"%d of %d proxies run a release older than the control plane's %s (%s); they move when their pods restart",
			behind, pods.total, cp, strings.Join(details, ", "))
	default:
		set(metav1.ConditionFalse, meshv1.ReasonAsExpected, "no proxy runs a release older than the control plane's %s (%d proxies)", cp, pods.total)
	}
}

// olderPatch says whether a is an earlier patch release of b's minor.
func olderPatch(a, b string) bool {
	va, errA := versions.ParseSemver(a)
	vb, errB := versions.ParseSemver(b)
	return errA == nil && errB == nil && va.Major == vb.Major && va.Minor == vb.Minor && va.Patch < vb.Patch
}
