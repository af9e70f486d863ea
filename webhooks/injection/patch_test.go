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

package injection

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	gomodulesjsonpatch "gomodules.xyz/jsonpatch/v2"
	// The JSON-patch library and version the API server (k8s.io/apiserver v0.37) applies
	// webhook patches with.
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// applyAsAPIServer applies ops to raw with the API server's JSON-patch library.
func applyAsAPIServer(t *testing.T, raw []byte, ops []gomodulesjsonpatch.Operation) []byte {
	t.Helper()
	encoded, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(encoded)
	if err != nil {
		t.Fatalf("the API server cannot decode the patch: %v", err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("the API server cannot apply the patch: %v\n%s", err, encoded)
	}
	return patched
}

// decodeAsAPIServer decodes a pod as the API server does: keys match case-sensitively.
func decodeAsAPIServer(t *testing.T, raw []byte) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}

// intendedPod is the pod in raw with Inject applied: what the patch must produce.
func intendedPod(t *testing.T, raw []byte) *corev1.Pod {
	t.Helper()
	pod := decodeAsAPIServer(t, raw)
	if err := Inject(pod, testNamespace.Name, testConfig); err != nil {
		t.Fatal(err)
	}
	return pod
}

// keepsOwnFields checks that patched keeps every field of the pod sent as raw, except those
// injection means to change: its own annotations, the service account name where none was set,
// and the handlers of the probes it reroutes. The pod's init containers must follow knit's two,
// its volumes precede knit's, and its containers stay in place.
func keepsOwnFields(raw, patched []byte) error {
	before, err := decodeObject(raw)
	if err != nil {
		return fmt.Errorf("the pod: %w", err)
	}
	after, err := decodeObject(patched)
	if err != nil {
		return fmt.Errorf("the patched pod: %w", err)
	}
	if err := sameExcept("", before, after, "metadata", "spec"); err != nil {
		return err
	}
	if meta, ok := before["metadata"].(map[string]any); ok {
		metaAfter, _ := after["metadata"].(map[string]any)
		if err := sameExcept("/metadata", meta, metaAfter, "annotations"); err != nil {
			return err
		}
		ann, _ := meta["annotations"].(map[string]any)
		annAfter, _ := metaAfter["annotations"].(map[string]any)
		if err := sameExcept("/metadata/annotations", ann, annAfter, AnnotationInjectedRevision, AnnotationProxyVersion); err != nil {
			return err
		}
	}
	spec, ok := before["spec"].(map[string]any)
	if !ok {
		return nil
	}
	specAfter, _ := after["spec"].(map[string]any)
	if err := sameExcept("/spec", spec, specAfter, "initContainers", "volumes", "containers", "serviceAccountName"); err != nil {
		return err
	}
	if sa, _ := spec["serviceAccountName"].(string); sa != "" && specAfter["serviceAccountName"] != sa {
		return fmt.Errorf("/spec/serviceAccountName: %v became %v", sa, specAfter["serviceAccountName"])
	}
	initBefore, _ := spec["initContainers"].([]any)
	initAfter, _ := specAfter["initContainers"].([]any)
	if len(initAfter) != len(initBefore)+2 || !sameElements(initAfter[2:], initBefore) {
		return fmt.Errorf("/spec/initContainers: the pod's own %v are not kept after knit's two in %v", initBefore, initAfter)
	}
	volBefore, _ := spec["volumes"].([]any)
	volAfter, _ := specAfter["volumes"].([]any)
	if len(volAfter) < len(volBefore) || !sameElements(volAfter[:len(volBefore)], volBefore) {
		return fmt.Errorf("/spec/volumes: the pod's own %v are not kept in %v", volBefore, volAfter)
	}
	cBefore, _ := spec["containers"].([]any)
	cAfter, _ := specAfter["containers"].([]any)
	if len(cAfter) != len(cBefore) {
		return fmt.Errorf("/spec/containers: %d containers became %d", len(cBefore), len(cAfter))
	}
	probes := []string{"readinessProbe", "livenessProbe", "startupProbe"}
	for i := range cBefore {
		c, ok := cBefore[i].(map[string]any)
		if !ok {
			if !reflect.DeepEqual(cBefore[i], cAfter[i]) {
				return fmt.Errorf("/spec/containers/%d: %v became %v", i, cBefore[i], cAfter[i])
			}
			continue
		}
		ca, _ := cAfter[i].(map[string]any)
		path := fmt.Sprintf("/spec/containers/%d", i)
		if err := sameExcept(path, c, ca, probes...); err != nil {
			return err
		}
		for _, p := range probes {
			pb, _ := c[p].(map[string]any)
			pa, _ := ca[p].(map[string]any)
			if err := sameExcept(path+"/"+p, pb, pa, "exec", "httpGet", "tcpSocket", "grpc"); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameExcept checks that every member of before, but those named, is in after unchanged.
func sameExcept(path string, before, after map[string]any, except ...string) error {
	for k, v := range before {
		if slices.Contains(except, k) {
			continue
		}
		if got, ok := after[k]; !ok || !reflect.DeepEqual(got, v) {
			return fmt.Errorf("%s/%s: %v became %v", path, k, v, got)
		}
	}
	return nil
}

func sameElements(a, b []any) bool {
	return slices.EqualFunc(a, b, func(x, y any) bool { return reflect.DeepEqual(x, y) })
}

func decodeObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out map[string]any
	return out, dec.Decode(&out)
}

func TestPatchKeepsFieldsThisPackageDoesNotKnow(t *testing.T) {
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","futureMeta":{"a":1}},
		"spec":{"futureSpec":[1,2,3],"initContainers":[{"name":"i","futureField":"kept"}],
		"containers":[{"name":"app","futureField":{"x":[1.50]},"readinessProbe":{"futureProbe":true,
		"httpGet":{"path":"/","port":8080,"futureHandler":1},"periodSeconds":3}}],
		"volumes":[{"name":"v","futureVolume":{}}]}}`)
	ops, err := Patch(raw, testNamespace, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	patched := applyAsAPIServer(t, raw, ops)
	if err := keepsOwnFields(raw, patched); err != nil {
		t.Error(err)
	}
	for _, kept := range []string{`"futureMeta":{"a":1}`, `"futureSpec":[1,2,3]`, `"futureField":"kept"`,
		`"futureField":{"x":[1.50]}`, `"futureProbe":true`, `"futureVolume":{}`} {
		if !bytes.Contains(patched, []byte(kept)) {
			t.Errorf("the patched pod lost %s:\n%s", kept, patched)
		}
	}
	if bytes.Contains(patched, []byte("futureHandler")) {
		t.Errorf("the rerouted probe kept a field of its old handler:\n%s", patched)
	}
}

func TestInjectValuesOtherThanTrueOrFalseAreRefused(t *testing.T) {
	for _, tc := range []struct {
		labels, annotations map[string]string
		wantErr             string
		wantInjected        bool
	}{
		{annotations: map[string]string{AnnotationInject: "no"}, wantErr: `annotation knit.dev/inject: "no" is not "true" or "false"`},
		{labels: map[string]string{AnnotationInject: "disabled"}, wantErr: `label knit.dev/inject: "disabled" is not "true" or "false"`},
		{annotations: map[string]string{AnnotationInject: "False"}, wantErr: `"False" is not`},
		{annotations: map[string]string{AnnotationInject: "true"}, wantInjected: true},
		{labels: map[string]string{AnnotationInject: "true"}, wantInjected: true},
		{annotations: map[string]string{AnnotationInject: "false"}},
	} {
		pod := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
		pod.Labels, pod.Annotations = tc.labels, tc.annotations
		raw, err := json.Marshal(&pod)
		if err != nil {
			t.Fatal(err)
		}
		ops, err := Patch(raw, testNamespace, testConfig)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("labels %v annotations %v: error %v, want one containing %q", tc.labels, tc.annotations, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("labels %v annotations %v: %v", tc.labels, tc.annotations, err)
		case (len(ops) > 0) != tc.wantInjected:
			t.Errorf("labels %v annotations %v: injected = %v, want %v", tc.labels, tc.annotations, len(ops) > 0, tc.wantInjected)
		}
	}
}

func TestContainersRunningAsTheProxyUIDAreRefusedByName(t *testing.T) {
	uid := func(u int64) *int64 { return &u }
	for name, tc := range map[string]struct {
		pod     corev1.PodSpec
		wantErr string
	}{
		"app container": {pod: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "ok", SecurityContext: &corev1.SecurityContext{RunAsUser: uid(1000)}},
			{Name: "sneaky", SecurityContext: &corev1.SecurityContext{RunAsUser: uid(ProxyUID)}},
		}}, wantErr: "container sneaky runs as UID 1337"},
		"init container": {pod: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "setup", SecurityContext: &corev1.SecurityContext{RunAsUser: uid(ProxyUID)}}},
			Containers:     []corev1.Container{{Name: "app"}},
		}, wantErr: "container setup runs as UID 1337"},
		"pod default": {pod: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: uid(ProxyUID)},
			Containers:      []corev1.Container{{Name: "app"}},
		}, wantErr: "container app runs as UID 1337"},
		"pod default overridden": {pod: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: uid(ProxyUID)},
			Containers:      []corev1.Container{{Name: "app", SecurityContext: &corev1.SecurityContext{RunAsUser: uid(1000)}}},
		}},
	} {
		pod := corev1.Pod{Spec: tc.pod}
		err := Inject(&pod, "shop", testConfig)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "securityContext.runAsUser") {
			t.Errorf("%s: error %v, want one containing %q and the fix", name, err, tc.wantErr)
		}
	}
}

func TestNamespacesWherePodsCannotRunMeshedAreRefused(t *testing.T) {
	pod := []byte(`{"metadata":{"name":"p"},"spec":{"containers":[{"name":"app"}]}}`)
	for _, tc := range []struct {
		ns      Namespace
		wantErr []string
	}{
		{Namespace{Name: "shop", HasTrustBundle: true}, nil},
		{Namespace{Name: "shop", HasTrustBundle: true, Labels: map[string]string{LabelPodSecurityEnforce: "privileged"}}, nil},
		{Namespace{Name: "shop", HasTrustBundle: true, Labels: map[string]string{"pod-security.kubernetes.io/warn": "restricted"}}, nil},
		{Namespace{Name: "shop", HasTrustBundle: true, Labels: map[string]string{LabelPodSecurityEnforce: "baseline"}},
			[]string{`namespace shop enforces Pod Security level "baseline"`, "pod-security.kubernetes.io/enforce=privileged", "knit.dev/inject=false"}},
		{Namespace{Name: "shop", HasTrustBundle: true, Labels: map[string]string{LabelPodSecurityEnforce: "restricted"}},
			[]string{`Pod Security level "restricted"`}},
		{Namespace{Name: "shop", HasTrustBundle: true, Labels: map[string]string{LabelPodSecurityEnforce: "strict"}},
			[]string{`Pod Security level "strict"`}},
		{Namespace{Name: "shop"}, []string{"namespace shop has no ConfigMap knit-trust-bundle yet"}},
	} {
		ops, err := Patch(pod, tc.ns, testConfig)
		if tc.wantErr == nil {
			if err != nil || len(ops) == 0 {
				t.Errorf("%+v: ops %v, error %v; want injected", tc.ns, ops, err)
			}
			continue
		}
		for _, want := range tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%+v: error %v, want one containing %q", tc.ns, err, want)
			}
		}
	}
	// A pod that opts out is none of the namespace's business.
	optOut := []byte(`{"metadata":{"annotations":{"knit.dev/inject":"false"}},"spec":{"containers":[{"name":"app"}]}}`)
	if ops, err := Patch(optOut, Namespace{Name: "shop", Labels: map[string]string{LabelPodSecurityEnforce: "restricted"}}, testConfig); err != nil || len(ops) != 0 {
		t.Errorf("opted-out pod: ops %v, error %v; want allowed unchanged", ops, err)
	}
}
