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

package translate

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// BenchmarkTranslate1000Services is the translation of make bench-controlplane's larger size.
func BenchmarkTranslate1000Services(b *testing.B) {
	in := Inputs{TrustDomain: "cluster.local"}
	for i := range 1000 {
		name := fmt.Sprintf("svc-%04d", i)
		in.Services = append(in.Services, service("bench", name, fmt.Sprintf("10.96.%d.%d", i/256, i%256), port("http", 80)))
		var eps []discoveryv1.Endpoint
		for j := range 10 {
			n := i*10 + j
			eps = append(eps, ep(fmt.Sprintf("10.%d.%d.%d", 1+n/65536, (n/256)%256, n%256), fmt.Sprintf("pod-%d", n), true))
			in.Pods = append(in.Pods, meshedPod("bench", fmt.Sprintf("pod-%d", n), "app"))
		}
		in.EndpointSlices = append(in.EndpointSlices, slice("bench", name, "http", 8080, eps...))
	}
	b.ReportAllocs()
	for b.Loop() {
		m := Translate(in)
		_ = m.Resources("bench-c0")
	}
}
