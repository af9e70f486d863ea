// Package conformance runs the Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance,
// the GAMMA mesh tests) against knit on the local cluster. `make conformance` (hack/conformance.sh)
// brings the cluster and the mesh up and passes the suite's own flags: profiles, supported features,
// the injection label for the test namespaces, the report file and the timeout overrides.
//
// Besides the suite's report (which lists only the tests inside the profiles) the test writes a
// Markdown table of every mesh test it ran, profile or not, to -knit-summary.
package conformance

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/gateway-api/conformance"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// minConsecutiveSuccesses is the least RequiredConsecutiveSuccesses knit accepts. With the
// suite's default of 3, a proxy with no routes at all passes tests that expect a route to pick
// one of two backends, by the luck of a 50/50 split: 3 matching answers in a row happen one time
// in eight, and the suite retries for 30 s. Ten in a row happen by chance one time in 1024.
const minConsecutiveSuccesses = 10

var summaryPath = flag.String("knit-summary", "", "Markdown file to write the table of mesh tests and their results to")

func TestMeshConformance(t *testing.T) {
	opts := strictOptions(t)
	if slices.Contains(opts.SupportedFeatures, features.SupportGateway) {
		t.Fatal("knit is a mesh: Gateway is not a supported feature")
	}

	results := &results{byName: map[string]result{}, kind: features.SupportMesh, profiles: meshProfiles}
	opts.Hook = func(t *testing.T, test suite.ConformanceTest, s *suite.ConformanceTestSuite) {
		results.record(t, test)
		results.checkMeshed(t, s.Client)
	}
	results.writeSummaryAtCleanup(t, opts.ConformanceProfiles)
	conformance.RunConformanceWithOptions(t, opts)
}

// strictOptions are the suite's options from its flags, refused unless they judge knit strictly
// and claim what knit supports explicitly (both runs share these rules).
func strictOptions(t *testing.T) suite.ConformanceOptions {
	t.Helper()
	opts := conformance.DefaultOptions(t)
	localOnly(t, &opts)
	if n := opts.TimeoutConfig.RequiredConsecutiveSuccesses; n < minConsecutiveSuccesses {
		t.Fatalf("RequiredConsecutiveSuccesses is %d: knit is judged strictly, pass "+
			"--timeout-config-overrides=RequiredConsecutiveSuccesses:%d or more (make conformance does)", n, minConsecutiveSuccesses)
	}
	if len(opts.ConformanceProfiles) == 0 || opts.EnableAllSupportedFeatures || len(opts.SupportedFeatures) == 0 {
		t.Fatal("name the conformance profiles and list the supported features explicitly (make conformance does)")
	}
	return opts
}

// writeSummaryAtCleanup prints the table of tests and writes it to -knit-summary once the run
// ends. Registered before the suite registers its report writer, so it runs after it (cleanups
// run last-in first-out, and only once the parallel tests are done).
func (r *results) writeSummaryAtCleanup(t *testing.T, profiles []suite.ConformanceProfileName) {
	t.Cleanup(func() {
		table := r.table(profiles)
		fmt.Print("\n" + table)
		if *summaryPath != "" {
			if err := os.WriteFile(*summaryPath, []byte(table), 0o644); err != nil {
				t.Errorf("writing %s: %v", *summaryPath, err)
			}
		}
	})
}

type result struct {
	test    suite.ConformanceTest
	outcome string // passed, failed, skipped (a feature not claimed, or skipped by name)
}

type results struct {
	mu     sync.Mutex
	byName map[string]result
	// kind is the feature a test must have to be recorded (Mesh or Gateway), profiles those the
	// table places tests in.
	kind     features.FeatureName
	profiles []suite.ConformanceProfile

	meshedOnce     sync.Once
	meshed, echoes int // echo pods with knit's sidecar, of all echo pods
}

// checkMeshed counts, once, the suite's echo pods that knit's injector gave a sidecar: the suite
// itself never checks, and MeshBasic passes on plain Kubernetes too.
func (r *results) checkMeshed(t *testing.T, c client.Client) {
	r.meshedOnce.Do(func() {
		for _, ns := range []string{suite.MeshNamespace, suite.MeshConsumerNamespace} {
			var pods corev1.PodList
			if err := c.List(context.Background(), &pods, client.InNamespace(ns)); err != nil {
				t.Logf("listing the echo pods in %s: %v", ns, err)
				continue
			}
			for _, p := range pods.Items {
				r.echoes++
				if p.Annotations[injectedRevisionAnnotation] != "" {
					r.meshed++
				}
			}
		}
	})
}

// injectedRevisionAnnotation is what knit's injector puts on every pod it gives a sidecar
// (webhooks/injection; this module does not import knit's).
const injectedRevisionAnnotation = "knit.dev/injected-revision"

// record keeps the outcome of one test of the run's kind (mesh or gateway).
func (r *results) record(t *testing.T, test suite.ConformanceTest) {
	if !slices.Contains(test.Features, r.kind) {
		return
	}
	res := result{test: test, outcome: "passed"}
	switch {
	case t.Failed():
		res.outcome = "failed"
	case t.Skipped():
		res.outcome = "skipped"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byName[test.ShortName] = res
}

// profiles knit is measured against, in the order the table lists them.
var meshProfiles = []suite.ConformanceProfile{suite.MeshHTTPConformanceProfile, suite.MeshGRPCConformanceProfile}

// membership says where a test stands: "MESH-HTTP core", "MESH-HTTP extended, MESH-GRPC
// extended", or "outside the profiles" (tests the report leaves out).
func membership(test suite.ConformanceTest, profiles []suite.ConformanceProfile, selected []suite.ConformanceProfileName) string {
	var in []string
	for _, p := range profiles {
		if !slices.Contains(selected, p.Name) {
			continue
		}
		core, all := true, true
		for _, f := range test.Features {
			if !p.CoreFeatures.Has(f) {
				core = false
				if !p.ExtendedFeatures.Has(f) {
					all = false
				}
			}
		}
		switch {
		case core:
			in = append(in, string(p.Name)+" core")
		case all:
			in = append(in, string(p.Name)+" extended")
		}
	}
	if len(in) == 0 {
		return "outside the profiles"
	}
	return strings.Join(in, ", ")
}

// table renders every recorded test as Markdown: one row per test, core tests first, then
// extended, then those outside the profiles, and a closing count.
func (r *results) table(selected []suite.ConformanceProfileName) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	type row struct{ name, where, outcome string }
	var rows []row
	counts := map[string]int{}
	for name, res := range r.byName {
		rows = append(rows, row{name, membership(res.test, r.profiles, selected), res.outcome})
		counts[res.outcome]++
	}
	rank := func(where string) int {
		switch {
		case strings.Contains(where, "core"):
			return 0
		case strings.Contains(where, "extended"):
			return 1
		}
		return 2
	}
	sort.Slice(rows, func(i, j int) bool {
		if a, b := rank(rows[i].where), rank(rows[j].where); a != b {
			return a < b
		}
		return rows[i].name < rows[j].name
	})
	var b strings.Builder
	b.WriteString("| Test | Profile | Result |\n|---|---|---|\n")
	for _, x := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", x.name, x.where, x.outcome)
	}
	what := "mesh"
	if r.kind == features.SupportGateway {
		what = "gateway"
	}
	fmt.Fprintf(&b, "\n%s tests: %d passed, %d failed, %d skipped\n", what, counts["passed"], counts["failed"], counts["skipped"])
	if r.kind == features.SupportMesh {
		fmt.Fprintf(&b, "echo pods with knit's sidecar: %d of %d\n", r.meshed, r.echoes)
	}
	return b.String()
}
