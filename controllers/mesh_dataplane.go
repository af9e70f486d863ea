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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
)

// proxyReports adds up what the control-plane pods of every revision report on their proxies.
type proxyReports struct {
	connected, upToDate, rejecting int32
	// live is the number of reports counted; expired ones (a pod that died without removing
	// its report) are not.
	live int
	// sample is the most recent refusal among the rejecting proxies, with who reported it.
	sample         *meshv1.ConfigRejection
	sampleRevision string
	samplePod      string
	// expiresAt is when the first live report expires, when the sums may change with no write.
	expiresAt time.Time
}

// sumReports adds up the reports of every revision that are younger than
// meshv1.ControlPlaneReportExpiry at now. A proxy has one stream to one control-plane pod, so
// the reports do not overlap, except for the moments a proxy reconnects elsewhere.
func sumReports(revisions []meshv1.MeshRevision, now time.Time) proxyReports {
	var out proxyReports
	for _, rev := range revisions {
		for _, r := range rev.Status.ControlPlanes {
			expires := r.LastUpdateTime.Add(meshv1.ControlPlaneReportExpiry)
			if !now.Before(expires) {
				continue
			}
			out.live++
			out.connected += r.Connected
			out.upToDate += r.UpToDate
			out.rejecting += r.Rejecting
			if out.expiresAt.IsZero() || expires.Before(out.expiresAt) {
				out.expiresAt = expires
			}
			if r.Rejecting == 0 || r.Rejection == nil {
				continue
			}
			if out.sample == nil || r.Rejection.Time.After(out.sample.Time.Time) {
				out.sample = r.Rejection.DeepCopy()
				out.sampleRevision, out.samplePod = rev.Name, r.Pod
			}
		}
	}
	return out
}

// setProxyReports fills the connection counts of status.dataPlane and the DataPlaneConfigured
// condition from the control-plane pods' reports, and asks for a reconcile when the first of
// them expires.
func (r *MeshReconciler) setProxyReports(st *meshState, revisions []meshv1.MeshRevision, now time.Time) {
	mesh := st.mesh
	s := &mesh.Status
	sum := sumReports(revisions, now)
	if s.DataPlane == nil {
		s.DataPlane = &meshv1.DataPlaneStatus{}
	}
	s.DataPlane.Connected, s.DataPlane.UpToDate, s.DataPlane.Rejecting = sum.connected, sum.upToDate, sum.rejecting
	if d := sum.expiresAt.Sub(now) + time.Second; !sum.expiresAt.IsZero() && (st.requeueAfter == 0 || d < st.requeueAfter) {
		st.requeueAfter = d
	}
	set := func(status metav1.ConditionStatus, reason, format string, args ...any) {
		conditions.Set(&s.Conditions, mesh.Generation, meshv1.ConditionDataPlaneConfigured, status, reason, format, args...)
	}
	switch {
	case sum.live == 0:
		set(metav1.ConditionUnknown, meshv1.ReasonNoReports,
			"no control-plane pod reports on its proxies (none runs yet, or its release does not report)")
	case sum.rejecting > 0 && sum.sample != nil:
		c := sum.sample
		set(metav1.ConditionFalse, meshv1.ReasonConfigRejected,
			"%d of %d connected proxies refuse the configuration they were sent and keep the one they accepted before; "+
				"e.g. proxy %s refused %s from control-plane pod %s (MeshRevision %s): %s",
			sum.rejecting, sum.connected, c.Proxy, c.TypeURL, sum.samplePod, sum.sampleRevision, c.Message)
	case sum.rejecting > 0:
		set(metav1.ConditionFalse, meshv1.ReasonConfigRejected,
			"%d of %d connected proxies refuse the configuration they were sent and keep the one they accepted before",
			sum.rejecting, sum.connected)
	default:
		set(metav1.ConditionTrue, meshv1.ReasonAsExpected,
			"no connected proxy refuses its configuration; %d of %d connected proxies run their latest one",
			sum.upToDate, sum.connected)
	}
}
