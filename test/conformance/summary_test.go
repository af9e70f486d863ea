package conformance

import (
	"strings"
	"testing"

	mesh "sigs.k8s.io/gateway-api/conformance/tests/mesh"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

var both = []suite.ConformanceProfileName{suite.MeshHTTPConformanceProfileName, suite.MeshGRPCConformanceProfileName}

// The summary must place each mesh test where the suite's report would: MeshBasic is core in
// both profiles, a redirect-path test extended, MeshFrontend in neither (the report omits it).
func TestMembershipFollowsTheSuiteProfiles(t *testing.T) {
	for _, c := range []struct {
		test suite.ConformanceTest
		want string
	}{
		{mesh.MeshBasic, "MESH-HTTP core, MESH-GRPC core"},
		{mesh.MeshHTTPRouteWeight, "MESH-HTTP core"},
		{mesh.MeshGRPCRouteWeight, "MESH-GRPC core"},
		{mesh.MeshHTTPRouteRedirectPath, "MESH-HTTP extended"},
		{mesh.MeshFrontend, "outside the profiles"},
		{mesh.MeshPorts, "outside the profiles"},
	} {
		if got := membership(c.test, meshProfiles, both); got != c.want {
			t.Errorf("%s: %q, want %q", c.test.ShortName, got, c.want)
		}
	}
	if got := membership(mesh.MeshGRPCRouteWeight, meshProfiles, both[:1]); got != "outside the profiles" {
		t.Errorf("MeshGRPCRouteWeight with MESH-HTTP only: %q", got)
	}
}

func TestTableListsCoreThenExtendedThenTheRestWithCounts(t *testing.T) {
	r := &results{kind: features.SupportMesh, profiles: meshProfiles, meshed: 3, echoes: 3, byName: map[string]result{
		"MeshFrontend":              {mesh.MeshFrontend, "failed"},
		"MeshHTTPRouteRedirectPath": {mesh.MeshHTTPRouteRedirectPath, "skipped"},
		"MeshTrafficSplit":          {mesh.MeshTrafficSplit, "failed"},
		"MeshBasic":                 {mesh.MeshBasic, "passed"},
	}}
	want := `| Test | Profile | Result |
|---|---|---|
| MeshBasic | MESH-HTTP core, MESH-GRPC core | passed |
| MeshTrafficSplit | MESH-HTTP core | failed |
| MeshHTTPRouteRedirectPath | MESH-HTTP extended | skipped |
| MeshFrontend | outside the profiles | failed |

mesh tests: 1 passed, 2 failed, 1 skipped
echo pods with knit's sidecar: 3 of 3
`
	if got := r.table(both); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	if !strings.HasPrefix(r.table(both), "| Test |") {
		t.Error("hack/conformance.sh reads rows of this table")
	}
}
