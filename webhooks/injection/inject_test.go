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
	"encoding/json"
	"flag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

var testConfig = Config{
	Revision:     "default-v0-1-0",
	ProxyImage:   "knit.local/knit/proxy:v0.1.0",
	ProxyVersion: "v0.1.0",
	TrustDomain:  "cluster.local",
	ControlPlane: "knit-controlplane-v0-1-0.knit-system.svc:15010",
	Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	},
	LogLevel:        "info",
	AccessLogFormat: "Off",
}

// readPod reads a testdata pod as the JSON the API server would send.
func readPod(t *testing.T, path string) []byte {
	t.Helper()
	y, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// testNamespace is a meshed namespace whose trust bundle exists, without a Pod Security label.
var testNamespace = Namespace{Name: "shop", HasTrustBundle: true}

// TestGoldenPatches compares the patch for each testdata pod with its reviewed golden file,
// then applies it as the API server does and checks that the result is the injected pod and
// keeps every field of the pod's own.
// Run `go test ./webhooks/injection -update` after a deliberate change and review the diff.
func TestGoldenPatches(t *testing.T) {
	pods, err := filepath.Glob("testdata/*.pod.yaml")
	if err != nil || len(pods) == 0 {
		t.Fatalf("no testdata pods: %v", err)
	}
	for _, path := range pods {
		name := strings.TrimSuffix(filepath.Base(path), ".pod.yaml")
		t.Run(name, func(t *testing.T) {
			raw := readPod(t, path)
			ops, err := Patch(raw, testNamespace, testConfig)
			if err != nil {
				t.Fatal(err)
			}
			patched := applyAsAPIServer(t, raw, ops)
			if want := intendedPod(t, raw); !equality.Semantic.DeepEqual(decodeAsAPIServer(t, patched), want) {
				wantJSON, _ := json.MarshalIndent(want, "", "  ")
				t.Errorf("the patched pod is not the injected pod:\npatched: %s\nwant: %s", patched, wantJSON)
			}
			if len(ops) > 0 {
				if err := keepsOwnFields(raw, patched); err != nil {
					t.Errorf("the patch loses a field of the pod: %v", err)
				}
			}
			got, err := json.MarshalIndent(ops, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", name+".patch.golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("patch differs from %s (run with -update and review):\n%s", golden, got)
			}
		})
	}
}

func TestInjectingTwiceChangesNothing(t *testing.T) {
	var pod corev1.Pod
	if err := json.Unmarshal(readPod(t, "testdata/probes.pod.yaml"), &pod); err != nil {
		t.Fatal(err)
	}
	if err := Inject(&pod, "shop", testConfig); err != nil {
		t.Fatal(err)
	}
	once := pod.DeepCopy()
	if err := Inject(&pod, "shop", testConfig); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(once, &pod) {
		t.Error("a second injection changed the pod")
	}
	if s := ShouldInject(&pod); s.Reason == "" {
		t.Error("an injected pod is still a candidate for injection")
	}
}

func TestBadOverridesAreRefusedByName(t *testing.T) {
	for annotation, value := range map[string]string{
		AnnotationProxyCPU:             "lots",
		AnnotationProxyMemoryLimit:     "1 GB",
		AnnotationProxyLogLevel:        "verbose",
		AnnotationExcludeInboundPorts:  "80,http",
		AnnotationExcludeOutboundPorts: "70000",
		AnnotationExcludeOutboundCIDRs: "10.0.0.0",
	} {
		pod := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
		pod.Annotations = map[string]string{annotation: value}
		err := Inject(&pod, "shop", testConfig)
		if err == nil || !strings.Contains(err.Error(), annotation) {
			t.Errorf("%s=%q: error %v, want one naming the annotation", annotation, value, err)
		}
	}
}

func TestNamedProbePortThatDoesNotExist(t *testing.T) {
	pod := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name:           "app",
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intOrString("web")}}},
	}}}}
	if err := Inject(&pod, "shop", testConfig); err == nil || !strings.Contains(err.Error(), `port "web"`) {
		t.Errorf("error = %v, want one naming the missing port", err)
	}
}

func TestPatchRefusesWhatIsNotAPod(t *testing.T) {
	for _, raw := range []string{``, `{`, `[]`, `null`, `{} {}`, `{"spec": {"containers": 5}}`} {
		if _, err := Patch([]byte(raw), testNamespace, testConfig); err == nil {
			t.Errorf("Patch(%q) succeeded", raw)
		}
	}
}

// FuzzPatch patches random pods: the patch must apply as the API server applies it, and the
// result must be a pod with knit's containers first that keeps every field of the pod's own.
func FuzzPatch(f *testing.F) {
	pods, err := filepath.Glob("testdata/*.pod.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range pods {
		y, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		raw, err := yaml.YAMLToJSON(y)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"metadata":{"annotations":{"knit.dev/exclude-inbound-ports":",,"}}}`))
	f.Add([]byte(`{"metadata":null,"spec":{"initContainers":null,"volumes":[null],"containers":[{"startupProbe":{}}]}}`))
	f.Add([]byte(`{"spec":{"containers":[{"readinessProbe":{"tcpSocket":{"port":1}}}]},"spec":{"containers":[{}]}}`))
	f.Add([]byte(`{"Spec":{"containers":[{"livenessProbe":{"grpc":{"port":1},"x":1e400}}]},"metadata":{"annotations":{"a/b~c":"1"}}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ops, err := Patch(raw, testNamespace, testConfig)
		if err != nil {
			return // refusing bad input is fine; crashing is not
		}
		if len(ops) == 0 {
			return // not injected
		}
		encoded, err := json.Marshal(ops)
		if err != nil {
			t.Fatalf("patch does not encode: %v", err)
		}
		patch, err := jsonpatch.DecodePatch(encoded)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		patched, err := patch.Apply(raw)
		if err != nil {
			t.Fatalf("patch %s does not apply: %v", encoded, err)
		}
		// A pod the API server could decode (it sends no other) must still decode patched.
		var pod corev1.Pod
		if sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &corev1.Pod{}) == nil {
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts(patched, &pod); err != nil {
				t.Fatalf("the patched pod does not decode: %v\n%s", err, patched)
			}
			if len(pod.Spec.InitContainers) < 2 || pod.Spec.InitContainers[0].Name != InitContainerName ||
				pod.Spec.InitContainers[1].Name != ProxyContainerName {
				t.Fatalf("the patched pod does not start with knit's init containers: %s", patched)
			}
		}
		if err := keepsOwnFields(raw, patched); err != nil {
			t.Fatalf("patch %s loses a field of the pod: %v", encoded, err)
		}
	})
}

func intOrString(s string) intstr.IntOrString { return intstr.FromString(s) }

func TestProxyGetsTheMeshsMTLSMode(t *testing.T) {
	cfg := testConfig
	cfg.MTLSMode = "STRICT"
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	if err := Inject(pod, "shop", cfg); err != nil {
		t.Fatal(err)
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name != ProxyContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.Name == "KNIT_MTLS_MODE" && e.Value == "STRICT" {
				return
			}
		}
		t.Fatalf("proxy env %v lacks KNIT_MTLS_MODE=STRICT", c.Env)
	}
	t.Fatal("no proxy container")
}

func TestProxyGetsTheMeshsObservability(t *testing.T) {
	proxyEnv := func(cfg Config, pod *corev1.Pod) map[string]string {
		t.Helper()
		if err := Inject(pod, "shop", cfg); err != nil {
			t.Fatal(err)
		}
		for _, c := range pod.Spec.InitContainers {
			if c.Name == ProxyContainerName {
				env := map[string]string{}
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
				return env
			}
		}
		t.Fatal("no proxy container")
		return nil
	}
	app := func(labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{ServiceAccountName: "web-sa", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	}

	env := proxyEnv(testConfig, app(nil))
	for _, name := range []string{"KNIT_TRACING_ENDPOINT", "KNIT_TRACING_SAMPLING_PERCENT", "KNIT_METRICS"} {
		if v, set := env[name]; set {
			t.Errorf("by default %s=%q is set", name, v)
		}
	}

	cfg := testConfig
	cfg.TracingEndpoint, cfg.TracingSamplingPercent, cfg.MetricsDisabled = "otel-collector.observability:4317", 5, true
	for _, tc := range []struct {
		labels  map[string]string
		service string
	}{
		{map[string]string{"app.kubernetes.io/name": "web", "app": "legacy"}, "web.shop"},
		{map[string]string{"app": "legacy"}, "legacy.shop"},
		{nil, "web-sa.shop"},
	} {
		env := proxyEnv(cfg, app(tc.labels))
		want := map[string]string{"KNIT_TRACING_ENDPOINT": "otel-collector.observability:4317",
			"KNIT_TRACING_SAMPLING_PERCENT": "5", "KNIT_TRACING_SERVICE_NAME": tc.service, "KNIT_METRICS": "off"}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("labels %v: %s=%q, want %q", tc.labels, k, env[k], v)
			}
		}
	}
}
