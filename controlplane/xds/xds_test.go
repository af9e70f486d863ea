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

package xds

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/controlplane/translate"
)

func TestTokenReviewsBecomeThePodsIdentityOrAClearRefusal(t *testing.T) {
	bound := authnv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     []string{"knit.dev"},
		User: authnv1.UserInfo{
			Username: "system:serviceaccount:shop:cart",
			Extra:    map[string]authnv1.ExtraValue{extraPodName: {"cart-0"}, extraPodUID: {"uid-1"}},
		},
	}
	id, err := identityFromReview(bound)
	if err != nil || id != (Identity{Namespace: "shop", Pod: "cart-0", PodUID: "uid-1", ServiceAccount: "cart"}) {
		t.Fatalf("identity %+v, %v", id, err)
	}
	if err := checkNode(id, "shop/cart-0"); err != nil {
		t.Errorf("own node refused: %v", err)
	}
	if err := checkNode(id, "shop/cart-1"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("another pod's node.id: %v", err)
	}
	if err := checkNode(id, ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no node.id: %v", err)
	}

	for name, mutate := range map[string]func(*authnv1.TokenReviewStatus){
		"not authenticated": func(s *authnv1.TokenReviewStatus) { s.Authenticated = false },
		"other audience":    func(s *authnv1.TokenReviewStatus) { s.Audiences = []string{"api"} },
		"a user":            func(s *authnv1.TokenReviewStatus) { s.User.Username = "alice" },
		"not pod-bound":     func(s *authnv1.TokenReviewStatus) { s.User.Extra = nil },
	} {
		st := bound
		st.User.Extra = map[string]authnv1.ExtraValue{extraPodName: {"cart-0"}}
		mutate(&st)
		if _, err := identityFromReview(st); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want Unauthenticated", name, err)
		}
	}
}

func TestRouteStatusKeepsOtherControllersAndTransitionTimes(t *testing.T) {
	parent := gwv1.ParentReference{Kind: ptrKind("Service"), Name: "cart"}
	earlier := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(earlier.Add(time.Hour))
	other := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "gw"}, ControllerName: "example.org/gateway"}
	current := []gwv1.RouteParentStatus{other, {
		ParentRef: parent, ControllerName: translate.ControllerName,
		Conditions: []metav1.Condition{
			{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: earlier},
			{Type: "PartiallyInvalid", Status: metav1.ConditionTrue, Reason: "UnsupportedValue", LastTransitionTime: earlier},
		},
	}}
	desired := []gwv1.RouteParentStatus{{
		ParentRef: parent, ControllerName: translate.ControllerName,
		Conditions: []metav1.Condition{
			{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"},
			{Type: "ResolvedRefs", Status: metav1.ConditionFalse, Reason: "BackendNotFound"},
		},
	}}
	out, changed := mergeParents(current, desired, now)
	if !changed || len(out) != 2 || out[0].ControllerName != other.ControllerName {
		t.Fatalf("merged %+v (changed %v)", out, changed)
	}
	conds := out[1].Conditions
	if len(conds) != 2 || conds[0].Type != "Accepted" || !conds[0].LastTransitionTime.Equal(&earlier) ||
		conds[1].Type != "ResolvedRefs" || !conds[1].LastTransitionTime.Equal(&now) {
		t.Errorf("conditions %+v", conds)
	}
	if _, changed := mergeParents(out, desired, metav1.NewTime(now.Add(time.Hour))); changed {
		t.Errorf("an unchanged status is written again")
	}
}

func ptrKind(k gwv1.Kind) *gwv1.Kind { return &k }
