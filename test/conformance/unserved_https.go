package conformance

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"testing/fstest"

	"sigs.k8s.io/gateway-api/conformance/utils/kubernetes"
)

// withoutHTTPS is set while knit's gateways do not terminate TLS: the suite's one base Gateway
// with only HTTPS listeners (same-namespace-with-https-listener) can then never be Programmed,
// and the suite's setup, which waits for every base Gateway, would time out before any test ran.
var withoutHTTPS = flag.Bool("knit-without-https", false,
	"mark the suite's HTTPS base Gateway with the suite's own readiness-exclusion annotation (knit does not serve HTTPS listeners yet)")

const (
	baseManifests = "base/manifests.yaml"
	httpsGateway  = "  name: same-namespace-with-https-listener\n"
)

// excludeHTTPSGateway returns the suite's manifests with the HTTPS base Gateway annotated
// kubernetes.GatewayExcludedFromReadinessChecks, the suite's mechanism for Gateways an
// implementation cannot program; every other file is the suite's own.
func excludeHTTPSGateway(suiteFS fs.FS) (fs.FS, error) {
	base, err := fs.ReadFile(suiteFS, baseManifests)
	if err != nil {
		return nil, fmt.Errorf("reading the suite's %s: %w", baseManifests, err)
	}
	if bytes.Count(base, []byte(httpsGateway)) != 1 {
		return nil, fmt.Errorf("the suite's %s does not name the HTTPS base Gateway once", baseManifests)
	}
	annotated := bytes.Replace(base, []byte(httpsGateway),
		[]byte(httpsGateway+"  annotations:\n    "+kubernetes.GatewayExcludedFromReadinessChecks+": \"true\"\n"), 1)
	return overlayFS{over: fstest.MapFS{baseManifests: {Data: annotated}}, under: suiteFS}, nil
}

// overlayFS serves the files of over in place of those of under.
type overlayFS struct{ over, under fs.FS }

func (o overlayFS) Open(name string) (fs.File, error) {
	if f, err := o.over.Open(name); err == nil {
		return f, nil
	}
	return o.under.Open(name)
}
