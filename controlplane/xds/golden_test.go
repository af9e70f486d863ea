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
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/knit-mesh/knit/controlplane/translate"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenTypes are the files of one client namespace's view: one DeltaDiscoveryResponse per type,
// as a proxy would receive it on a fresh stream.
var goldenTypes = []struct{ file, typeURL string }{
	{"cds.json", resourcev3.ClusterType},
	{"eds.json", resourcev3.EndpointType},
	{"lds.json", resourcev3.ListenerType},
	{"rds.json", resourcev3.RouteType},
}

// TestGoldenResources translates each testdata/<case>/input.yaml and compares, for every
// namespace that appears in the input, the resources a proxy of that namespace receives with
// testdata/<case>/<namespace>/{cds,eds,lds,rds}.json, and the route status with status.yaml.
// Every resource must also pass the Envoy API's validation. Regenerate with -update.
func TestGoldenResources(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/input.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, input := range cases {
		dir := filepath.Dir(input)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in, namespaces := readInputs(t, input)
			m := translate.Translate(in)
			if len(m.Problems) > 0 {
				t.Errorf("problems: %v", m.Problems)
			}
			for _, ns := range namespaces {
				res := m.Resources(ns)
				snap, err := Snapshot("golden", res)
				if err != nil {
					t.Fatal(err)
				}
				if err := snap.Consistent(); err != nil {
					t.Errorf("%s: snapshot not consistent: %v", ns, err)
				}
				for _, g := range goldenTypes {
					resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: g.typeURL, SystemVersionInfo: "golden"}
					byName := snap.GetResources(g.typeURL)
					names := make([]string, 0, len(byName))
					for name := range byName {
						names = append(names, name)
					}
					slices.Sort(names)
					for _, name := range names {
						r := byName[name]
						if v, ok := r.(interface{ ValidateAll() error }); ok {
							if err := v.ValidateAll(); err != nil {
								t.Errorf("%s %s: %v", ns, name, err)
							}
						}
						a, err := anypb.New(r)
						if err != nil {
							t.Fatal(err)
						}
						resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: name, Version: "golden", Resource: a})
					}
					compareGolden(t, filepath.Join(dir, ns, g.file), protoJSON(t, resp))
				}
			}
			status, err := yaml.Marshal(m.Status)
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join(dir, "status.yaml"), status)
		})
	}
}

// protoJSON is protojson made deterministic: protojson varies its whitespace on purpose.
func protoJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	raw, err := protojson.MarshalOptions{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./controlplane/xds -run Golden -update)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the translation (run with -update and review the diff):\n%s", path, got)
	}
}

// readInputs decodes the Kubernetes objects of a multi-document YAML file and lists the
// namespaces they live in.
func readInputs(t *testing.T, path string) (translate.Inputs, []string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	in := translate.Inputs{TrustDomain: "cluster.local"}
	seen := map[string]bool{}
	for i, doc := range strings.Split(string(raw), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, _, err := decoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		seen[obj.(client.Object).GetNamespace()] = true
		switch o := obj.(type) {
		case *corev1.Service:
			in.Services = append(in.Services, *o)
		case *discoveryv1.EndpointSlice:
			in.EndpointSlices = append(in.EndpointSlices, *o)
		case *corev1.Pod:
			in.Pods = append(in.Pods, *o)
		case *gwv1.HTTPRoute:
			in.HTTPRoutes = append(in.HTTPRoutes, *o)
		case *gwv1.GRPCRoute:
			in.GRPCRoutes = append(in.GRPCRoutes, *o)
		default:
			t.Fatalf("%s document %d: unexpected %s", path, i, fmt.Sprintf("%T", obj))
		}
	}
	namespaces := make([]string, 0, len(seen))
	for ns := range seen {
		namespaces = append(namespaces, ns)
	}
	slices.Sort(namespaces)
	return in, namespaces
}
