package xds

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/metrics"
)

// goldenDir holds knit-controlplane's golden output: per test case and
// client namespace, one delta response (protojson) per resource type
// (written by go test ./controlplane/xds -run Golden -update).
const goldenDir = "../../controlplane/xds/testdata"

// TestControlPlaneGoldenOutputIsAccepted feeds every golden response to
// the client's decoding and translation, in the contract's order, and
// applies the result to a real data plane: what the control plane writes
// is what the proxy accepts.
func TestControlPlaneGoldenOutputIsAccepted(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(goldenDir, "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var checked int
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		name, _ := filepath.Rel(goldenDir, dir)
		t.Run(name, func(t *testing.T) {
			dp := dataplane.New(logr.Discard(), metrics.New())
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				dp.Drain(ctx)
			}()
			c, err := New(Options{Address: "golden:15010", NodeID: "golden/pod"}, testBase(t), dp.Apply, logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			for _, file := range []string{"cds.json", "eds.json", "lds.json", "rds.json"} {
				raw, err := os.ReadFile(filepath.Join(dir, file))
				if err != nil {
					t.Fatal(err)
				}
				var resp discoveryv3.DeltaDiscoveryResponse
				if err := protojson.Unmarshal(raw, &resp); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				if resp.TypeUrl == "" && len(resp.Resources) > 0 {
					resp.TypeUrl = resp.Resources[0].GetResource().GetTypeUrl()
				}
				if resp.TypeUrl == "" {
					continue // an empty response of a type with no resources
				}
				resp.Nonce = file
				if reply := c.handle(context.Background(), &resp); reply.GetErrorDetail() != nil {
					t.Fatalf("%s NACKed: %s", file, reply.GetErrorDetail().GetMessage())
				}
				checked++
			}
		})
	}
	if len(dirs) == 0 {
		t.Skipf("no golden files under %s yet", goldenDir)
	}
	t.Logf("%d golden responses accepted", checked)
}
