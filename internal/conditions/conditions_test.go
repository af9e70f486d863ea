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

package conditions

import (
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSummarize(t *testing.T) {
	reqs := []Requirement{
		{Type: "Available", Healthy: metav1.ConditionTrue},
		{Type: "Degraded", Healthy: metav1.ConditionFalse},
	}
	cond := func(t string, s metav1.ConditionStatus, msg string) metav1.Condition {
		return metav1.Condition{Type: t, Status: s, Reason: "R", Message: msg}
	}
	tests := []struct {
		name        string
		conds       []metav1.Condition
		wantStatus  metav1.ConditionStatus
		wantMessage string
	}{
		{"all healthy", []metav1.Condition{cond("Available", "True", ""), cond("Degraded", "False", "")},
			metav1.ConditionTrue, "all conditions hold"},
		{"missing is unknown", []metav1.Condition{cond("Available", "True", "")},
			metav1.ConditionUnknown, "waiting for Degraded"},
		{"unknown is unknown", []metav1.Condition{cond("Available", "Unknown", ""), cond("Degraded", "False", "")},
			metav1.ConditionUnknown, "waiting for Available"},
		{"unhealthy wins over unknown and names the culprit", []metav1.Condition{
			cond("Available", "Unknown", ""), cond("Degraded", "True", "Deployment knit-system/cp is down")},
			metav1.ConditionFalse, "Degraded=True (R): Deployment knit-system/cp is down"},
		{"negative condition healthy when False only", []metav1.Condition{
			cond("Available", "False", "no pods"), cond("Degraded", "False", "")},
			metav1.ConditionFalse, "Available=False (R): no pods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(tt.conds, "Ok", "NotOk", reqs...)
			if got.Status != tt.wantStatus || got.Message != tt.wantMessage {
				t.Errorf("Summarize() = %+v, want status %s message %q", got, tt.wantStatus, tt.wantMessage)
			}
			wantReason := "NotOk"
			if tt.wantStatus == metav1.ConditionTrue {
				wantReason = "Ok"
			}
			if got.Reason != wantReason {
				t.Errorf("reason = %s, want %s", got.Reason, wantReason)
			}
		})
	}
}

func TestInitUnknownKeepsExisting(t *testing.T) {
	conds := []metav1.Condition{{Type: "A", Status: metav1.ConditionTrue, Reason: "Done", Message: "m"}}
	InitUnknown(&conds, 3, "Pending", "A", "B")
	if len(conds) != 2 {
		t.Fatalf("want 2 conditions, got %d", len(conds))
	}
	if conds[0].Status != metav1.ConditionTrue {
		t.Errorf("existing condition A was overwritten: %+v", conds[0])
	}
	if conds[1].Type != "B" || conds[1].Status != metav1.ConditionUnknown || conds[1].ObservedGeneration != 3 {
		t.Errorf("B = %+v, want Unknown at generation 3", conds[1])
	}
}

func TestSummarizeSaysEachThingOnce(t *testing.T) {
	missing := "cert-manager is not installed: CustomResourceDefinition certificates.cert-manager.io not found"
	conds := []metav1.Condition{
		{Type: "DependenciesHealthy", Status: "False", Reason: "CertManagerMissing", Message: missing},
		{Type: "CertificatesReady", Status: "False", Reason: "CertManagerMissing", Message: missing},
		{Type: "ControlPlaneReady", Status: "False", Reason: "NotReady", Message: "MeshRevision r1: Reconciled=False (ReconcileFailed): " + missing},
	}
	reqs := []Requirement{
		{Type: "DependenciesHealthy", Healthy: "True"},
		{Type: "CertificatesReady", Healthy: "True"},
		{Type: "ControlPlaneReady", Healthy: "True"},
	}
	got := Summarize(conds, "Ok", "NotOk", reqs...).Message
	if n := strings.Count(got, missing); n != 1 {
		t.Errorf("the missing dependency is said %d times, want once: %s", n, got)
	}
	want := "DependenciesHealthy=False (CertManagerMissing): " + missing +
		"; CertificatesReady=False (CertManagerMissing): (see DependenciesHealthy)" +
		"; ControlPlaneReady=False (NotReady): MeshRevision r1: Reconciled=False (ReconcileFailed): (see DependenciesHealthy)"
	if got != want {
		t.Errorf("Summarize message\n got %s\nwant %s", got, want)
	}
}

func TestSetBoundsTheMessage(t *testing.T) {
	var conds []metav1.Condition
	Set(&conds, 1, "Ready", metav1.ConditionFalse, "NotReady", "%s", strings.Repeat("é", 2*MaxMessageLength))
	msg := conds[0].Message
	if len(msg) > MaxMessageLength || !utf8.ValidString(msg) || !strings.HasSuffix(msg, " …") {
		t.Errorf("message of %d bytes (valid UTF-8: %v) ends %q", len(msg), utf8.ValidString(msg), msg[len(msg)-8:])
	}
}
