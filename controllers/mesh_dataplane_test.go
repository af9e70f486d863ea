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
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

func TestProxyReportsAddUpLiveControlPlanePodsOfEveryRevision(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) metav1.Time { return metav1.NewTime(now.Add(-ago)) }
	rejection := func(proxy string, ago time.Duration) *meshv1.ConfigRejection {
		return &meshv1.ConfigRejection{Proxy: proxy, TypeURL: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
			Message: "cluster x: bad lb_policy", Time: at(ago)}
	}
	revisions := []meshv1.MeshRevision{
		{ObjectMeta: metav1.ObjectMeta{Name: "default-v0-1-0"}, Status: meshv1.MeshRevisionStatus{ControlPlanes: []meshv1.ControlPlaneReport{
			{Pod: "cp-a", LastUpdateTime: at(10 * time.Second), Connected: 5, UpToDate: 4, Rejecting: 1, Rejection: rejection("shop/old", time.Minute)},
			// Died without removing its report: its proxies have reconnected to cp-a meanwhile.
			{Pod: "cp-dead", LastUpdateTime: at(meshv1.ControlPlaneReportExpiry), Connected: 7, UpToDate: 7},
		}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "default-v0-2-0"}, Status: meshv1.MeshRevisionStatus{ControlPlanes: []meshv1.ControlPlaneReport{
			{Pod: "cp-b", LastUpdateTime: at(time.Minute), Connected: 3, UpToDate: 1, Rejecting: 2, Rejection: rejection("web/new", time.Second)},
		}}},
	}
	sum := sumReports(revisions, now)
	if sum.live != 2 || sum.connected != 8 || sum.upToDate != 5 || sum.rejecting != 3 {
		t.Fatalf("sums %+v, want 2 live reports, 8 connected, 5 up to date, 3 rejecting", sum)
	}
	if sum.sample.Proxy != "web/new" || sum.samplePod != "cp-b" || sum.sampleRevision != "default-v0-2-0" {
		t.Errorf("sample %+v from %s/%s, want the most recent refusal", sum.sample, sum.sampleRevision, sum.samplePod)
	}
	if want := at(time.Minute).Add(meshv1.ControlPlaneReportExpiry); !sum.expiresAt.Equal(want) {
		t.Errorf("first expiry %s, want %s", sum.expiresAt, want)
	}

	r := &MeshReconciler{}
	st := &meshState{mesh: &meshv1.Mesh{}}
	r.setProxyReports(st, revisions, now)
	dp := st.mesh.Status.DataPlane
	if dp.Connected != 8 || dp.UpToDate != 5 || dp.Rejecting != 3 {
		t.Errorf("status.dataPlane %+v", dp)
	}
	c := meta.FindStatusCondition(st.mesh.Status.Conditions, meshv1.ConditionDataPlaneConfigured)
	if c.Status != metav1.ConditionFalse || c.Reason != meshv1.ReasonConfigRejected {
		t.Fatalf("condition %+v", c)
	}
	for _, part := range []string{"3 of 8 connected proxies", "proxy web/new", "envoy.config.cluster.v3.Cluster", "cp-b", "default-v0-2-0", "bad lb_policy"} {
		if !strings.Contains(c.Message, part) {
			t.Errorf("message %q does not say %q", c.Message, part)
		}
	}
	if st.requeueAfter <= 0 || st.requeueAfter > meshv1.ControlPlaneReportExpiry {
		t.Errorf("requeue after %s: the counts must drop when a report expires", st.requeueAfter)
	}

	// Every report expired: nothing is connected, so nothing is up to date.
	st = &meshState{mesh: &meshv1.Mesh{}}
	r.setProxyReports(st, revisions, now.Add(meshv1.ControlPlaneReportExpiry))
	dp = st.mesh.Status.DataPlane
	c = meta.FindStatusCondition(st.mesh.Status.Conditions, meshv1.ConditionDataPlaneConfigured)
	if dp.Connected != 0 || dp.UpToDate != 0 || c.Status != metav1.ConditionUnknown || c.Reason != meshv1.ReasonNoReports {
		t.Errorf("with expired reports: %+v, %+v", dp, c)
	}

	revisions[1].Status.ControlPlanes[0].Rejecting, revisions[1].Status.ControlPlanes[0].Rejection = 0, nil
	revisions[0].Status.ControlPlanes[0].Rejecting, revisions[0].Status.ControlPlanes[0].Rejection = 0, nil
	st = &meshState{mesh: &meshv1.Mesh{}}
	r.setProxyReports(st, revisions, now)
	if c = meta.FindStatusCondition(st.mesh.Status.Conditions, meshv1.ConditionDataPlaneConfigured); c.Status != metav1.ConditionTrue {
		t.Errorf("no refusal: %+v", c)
	}
}
