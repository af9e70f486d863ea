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
	"maps"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/knit-mesh/knit/webhooks/injection"
)

// The pods are listed before their workload is read. When the workload's rollout for the
// upgrade finishes in between, the pod list still shows the old revision while the Deployment
// says rolled out: the upgrade must count the pods again, not restart the workload a second
// time (seen in the integration suite as a Deployment restarted twice for one move).
func TestReadWorkloadsRecountsPodsListedBeforeTheRollout(t *testing.T) {
	const old, target = "default-v0-1-0", "default-v0-2-0"
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Generation: 2, CreationTimestamp: metav1.Now(),
			Annotations: map[string]string{AnnotationUpgradeTo: target}},
		Spec:   appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1},
	}
	pod := func(name, rev string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels,
			Annotations: map[string]string{injection.AnnotationInjectedRevision: rev}}}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	finished := func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(dep, pod("web-new", target), pod("web-done", old, finished)).Build()
	r := &MeshReconciler{APIReader: reader}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}

	// What the earlier pod list saw: the pod of the old revision, not yet replaced.
	stale := map[client.ObjectKey]map[string]int{{Namespace: "deploy", Name: "web"}: {old: 1}}
	ws, err := r.readWorkloads(context.Background(), ns, stale)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 {
		t.Fatalf("workloads: %v", ws)
	}
	if want := map[string]int{target: 1}; !maps.Equal(ws[0].revisions, want) {
		t.Fatalf("revisions %v, want %v (counted again after the rollout)", ws[0].revisions, want)
	}
	plan := planUpgrade(ws, target, 2, false, func(*workload) []string { return nil })
	if len(plan.next) != 0 || plan.moved != 1 {
		t.Fatalf("plan: next %v, moved %d of %d; want the workload counted as moved", plan.next, plan.moved, plan.workloads)
	}
}
