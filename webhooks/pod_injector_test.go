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

package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/knit-mesh/knit/webhooks/injection"
)

func testWebhook() http.Handler {
	return NewInjectionWebhook(&PodInjector{
		Config: func() (injection.Config, error) {
			return injection.Config{Revision: "r1", ProxyImage: "proxy:1", ProxyVersion: "v1", TrustDomain: "cluster.local"}, nil
		},
		Namespaces: meshedNamespace{},
	})
}

// meshedNamespace answers that every namespace is meshed and holds its trust bundle: these
// tests are about decoding requests, not namespaces.
type meshedNamespace struct{}

func (meshedNamespace) Namespace(_ context.Context, name string) (injection.Namespace, error) {
	return injection.Namespace{Name: name, HasTrustBundle: true}, nil
}

const validReview = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",` +
	`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
	`"namespace":"shop","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},` +
	`"spec":{"containers":[{"name":"app","image":"app:1"}]}}}}`

// FuzzInjectionWebhook throws arbitrary bodies at the webhook's HTTP handler: it must answer
// every one, and never panic.
func FuzzInjectionWebhook(f *testing.F) {
	f.Add([]byte(validReview))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`))
	f.Add([]byte(`{"request":{"uid":"x","kind":{"kind":"Pod"},"object":{"spec":{"containers":[{"readinessProbe":{"httpGet":{"port":"nope"}}}]}}}}`))
	f.Add([]byte("\x00"))
	h := testWebhook()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, InjectPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil || review.Response == nil {
				t.Fatalf("200 without an AdmissionReview response: %q", rec.Body.String())
			}
		}
	})
}

func TestValidReviewIsPatched(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, InjectPath, bytes.NewReader([]byte(validReview)))
	req.Header.Set("Content-Type", "application/json")
	testWebhook().ServeHTTP(rec, req)
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
		t.Fatal(err)
	}
	if r := review.Response; r == nil || !r.Allowed || r.PatchType == nil || len(r.Patch) == 0 || r.UID != "u1" {
		t.Fatalf("response = %+v, want an allowed JSON patch for uid u1", review.Response)
	}
	// The patch applies to the pod sent, as the API server applies it, and injects it.
	var sent admissionv1.AdmissionReview
	if err := json.Unmarshal([]byte(validReview), &sent); err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(review.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(sent.Request.Object.Raw)
	if err != nil {
		t.Fatalf("the patch does not apply: %v", err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(patched, &pod); err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[1].Name != injection.ProxyContainerName ||
		len(pod.Spec.Containers) != 1 || pod.Spec.Containers[0].Name != "app" {
		t.Errorf("patched pod = %s, want app with knit's init containers", patched)
	}
}
