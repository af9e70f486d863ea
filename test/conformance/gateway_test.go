package conformance

import (
	"slices"
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// gatewayProfiles are the gateway profiles the table places tests in.
var gatewayProfiles = []suite.ConformanceProfile{suite.GatewayHTTPConformanceProfile, suite.GatewayGRPCConformanceProfile}

// TestGatewayConformance runs the suite's gateway profiles against Gateways of class knit
// (--gateway-class=knit): the suite deploys its own Gateways, routes and echo-basic backends.
func TestGatewayConformance(t *testing.T) {
	opts := strictOptions(t)
	if !slices.Contains(opts.SupportedFeatures, features.SupportGateway) || slices.Contains(opts.SupportedFeatures, features.SupportMesh) {
		t.Fatal("the gateway run claims Gateway and not Mesh (the mesh run is TestMeshConformance)")
	}
	results := &results{byName: map[string]result{}, kind: features.SupportGateway, profiles: gatewayProfiles}
	opts.Hook = func(t *testing.T, test suite.ConformanceTest, _ *suite.ConformanceTestSuite) { results.record(t, test) }
	results.writeSummaryAtCleanup(t, opts.ConformanceProfiles)
	conformance.RunConformanceWithOptions(t, opts)
}
