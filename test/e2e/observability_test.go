//go:build e2e

package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

const obsNS = "knit-e2e-obs"

// otlpSpan is what the spec checks of an exported span.
type otlpSpan struct {
	service, name, traceID, kind string
}

// spanCollector is a real OTLP/gRPC trace receiver run by the test on the node's address, which
// pods reach through the local cluster's routes: the collector a user points tracing at.
type spanCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []otlpSpan
}

func (c *spanCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				c.spans = append(c.spans, otlpSpan{service: service, name: sp.Name, traceID: hex.EncodeToString(sp.TraceId), kind: sp.Kind.String()})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *spanCollector) received() []otlpSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]otlpSpan(nil), c.spans...)
}

func observabilitySpecs() {
	It("exports a meshed request's spans from both sidecars to the Mesh's OTLP collector, in one trace, and serves no metrics when they are off", Label("observability"), func() {
		ln, err := net.Listen("tcp", net.JoinHostPort(cluster.nodeIP, "0"))
		Expect(err).NotTo(HaveOccurred())
		collector := &spanCollector{}
		srv := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(srv, collector)
		go srv.Serve(ln)
		DeferCleanup(srv.Stop)
		endpoint := ln.Addr().String()

		kubectl("patch", "mesh", "default", "--type", "merge", "-p",
			fmt.Sprintf(`{"spec":{"observability":{"tracing":{"endpoint":%q,"samplingPercent":100},"metrics":{"enabled":false}}}}`, endpoint))
		// Put back at the end; on a failure, as a cleanup, which runs after the container's
		// AfterAll when this is its last spec (the cluster may be gone by then).
		restored := false
		restore := func() {
			if restored || !clusterUp() {
				return
			}
			restored = true
			kubectl("patch", "mesh", "default", "--type", "json", "-p",
				`[{"op":"remove","path":"/spec/observability/tracing"},{"op":"replace","path":"/spec/observability/metrics/enabled","value":true}]`)
			_, _ = tryKubectl("delete", "namespace", obsNS, "--wait=false")
		}
		DeferCleanup(restore)
		waitControlPlaneArg("--tracing-endpoint=" + endpoint)

		applyManifest(meshedNamespace(obsNS) + httpService(obsNS, "server") +
			probeDeployment(obsNS, "server", 1) + "---\n" + probeDeployment(obsNS, "client", 1))
		for _, d := range []string{"server", "client"} {
			kubectl("-n", obsNS, "rollout", "status", "deployment/"+d, "--timeout=180s")
		}
		out := kubectl("-n", obsNS, "exec", "deploy/client", "-c", "app", "--",
			"/probe", "http", fmt.Sprintf("http://server.%s.svc.cluster.local/traced", obsNS), "3")
		Expect(strings.Count(out, "200 OK")).To(Equal(3), out)

		By("one trace per request, with the client sidecar's span and the server sidecar's span in it")
		clientService, serverService := "client."+obsNS, "server."+obsNS
		Eventually(func(g Gomega) {
			byTrace := map[string]map[string]bool{}
			for _, s := range collector.received() {
				if byTrace[s.traceID] == nil {
					byTrace[s.traceID] = map[string]bool{}
				}
				byTrace[s.traceID][s.service+"/"+s.kind] = true
			}
			joined := 0
			for _, services := range byTrace {
				if services[clientService+"/SPAN_KIND_CLIENT"] && services[serverService+"/SPAN_KIND_SERVER"] {
					joined++
				}
			}
			g.Expect(joined).To(BeNumerically(">=", 3), "traces holding both sidecars' spans: %v", byTrace)
		}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		GinkgoWriter.Printf("spans received: %d\n", len(collector.received()))

		By("no /metrics on the sidecar's probe port, while its probes answer")
		out, err = tryKubectl("-n", obsNS, "exec", "deploy/server", "-c", "app", "--", "/probe", "get", "http://127.0.0.1:15020/metrics")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("404"))
		Expect(kubectl("-n", obsNS, "exec", "deploy/server", "-c", "app", "--", "/probe", "get", "http://127.0.0.1:15020/ready")).To(ContainSubstring("200"))
		restore()
		Eventually(func(g Gomega) {
			out, _ := tryKubectl("-n", "knit-system", "get", "deployment", controlPlaneDeployment(), "-o", "jsonpath={.spec.template.spec.containers[0].args}")
			g.Expect(out).NotTo(ContainSubstring("--tracing-endpoint"))
		}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
		kubectl("-n", "knit-system", "rollout", "status", "deployment/"+controlPlaneDeployment(), "--timeout=180s")
	})
}
