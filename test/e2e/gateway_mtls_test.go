//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// gatewayMTLSNS holds a meshed backend, created under mtls.mode STRICT, and a Gateway of class
// knit routing to it.
const gatewayMTLSNS = "knit-e2e-gateway-mtls"

// gatewayMTLSSpecs: a Gateway's proxies reach a meshed backend under STRICT over mutual TLS with
// the Gateway's own workload identity (issue #15 with #12's identities). They run in order
// inside the suite's ordered container, after mesh.
func gatewayMTLSSpecs() {
	It("serves a meshed backend under STRICT through a Gateway of class knit over mutual TLS with the Gateway's identity: TLS records on the backend pod's veth, no HTTP in clear", Label("gateway-mtls"), func() {
		trustDomain := meshField("{.spec.trust.trustDomain}")
		Expect(trustDomain).NotTo(BeEmpty())
		DeferCleanup(func() {
			if !clusterUp() { // a cleanup of the container's last spec runs after its AfterAll
				return
			}
			_, _ = tryKubectl("delete", "namespace", gatewayMTLSNS, "--wait=false")
			setMeshMTLS("PERMISSIVE") // the specs after this one find the control plane back on it
		})
		// The mode reaches sidecars at injection: the backend is created once the control plane
		// runs with STRICT.
		setMeshMTLS("STRICT")
		applyManifest(meshedNamespace(gatewayMTLSNS) + httpService(gatewayMTLSNS, "web") + probeDeployment(gatewayMTLSNS, "web", 1) + fmt.Sprintf(`
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: %[1]s}
spec:
  gatewayClassName: knit
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: %[1]s}
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.example.com]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`, gatewayMTLSNS))
		kubectl("-n", gatewayMTLSNS, "rollout", "status", "deployment/web", "--timeout=180s")
		webPod := strings.TrimSpace(kubectl("-n", gatewayMTLSNS, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"))
		webIP := strings.TrimSpace(kubectl("-n", gatewayMTLSNS, "get", "pod", webPod, "-o", "jsonpath={.status.podIP}"))
		Expect(kubectl("-n", gatewayMTLSNS, "get", "pod", webPod, "-o",
			`jsonpath={.spec.initContainers[?(@.name=="knit-proxy")].env[?(@.name=="KNIT_MTLS_MODE")].value}`)).To(Equal("STRICT"))

		Eventually(func() string {
			out, _ := tryKubectl("-n", gatewayMTLSNS, "get", "gateway", "edge", "-o", `jsonpath={.status.conditions[?(@.type=="Programmed")].status}`)
			return out
		}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Equal("True"), "the gateway's proxy is Ready: configured and holding its certificate")
		gatewayID := fmt.Sprintf("spiffe://%s/ns/%s/sa/edge-knit", trustDomain, gatewayMTLSNS)
		Expect(kubectl("-n", gatewayMTLSNS, "get", "deployment", "edge-knit", "-o",
			`jsonpath={.spec.template.spec.containers[0].env[?(@.name=="KNIT_IDENTITY")].value} {.spec.template.spec.containers[0].env[?(@.name=="KNIT_MTLS_MODE")].value}`)).
			To(Equal(gatewayID + " STRICT"))
		kubectl("-n", gatewayMTLSNS, "rollout", "status", "deployment/edge-knit", "--timeout=180s")
		gatewayIP := strings.TrimSpace(kubectl("-n", gatewayMTLSNS, "get", "pods", "-l", "gateway.networking.k8s.io/gateway-name=edge",
			"--field-selector=status.phase=Running", "-o", "jsonpath={.items[0].status.podIP}"))
		addr := strings.TrimSpace(kubectl("-n", gatewayMTLSNS, "get", "gateway", "edge", "-o", `jsonpath={.status.addresses[0].value}`))

		link := podHostLink(webIP)
		capture := startWireCapture(link, net.ParseIP(webIP))
		get := func() (int, string, error) {
			req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/gateway-mtls", nil)
			if err != nil {
				return 0, "", err
			}
			req.Host = "shop.example.com"
			c := &http.Client{Timeout: 5 * time.Second}
			resp, err := c.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return resp.StatusCode, string(body), err
		}
		// The Service's endpoints reach the host's routes a moment after the pod is Ready.
		Eventually(func(g Gomega) {
			code, body, err := get()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(Equal(http.StatusOK), body)
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
		for range 50 {
			code, body, err := get()
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(http.StatusOK), body)
			Expect(body).To(HavePrefix("hello from "+webPod), "the backend answered")
		}
		s := summarize(capture.stop(gatewayIP))
		GinkgoWriter.Printf("captured on %s between gateway %s and backend %s: %d segments, %d ClientHellos, %d application-data records, streams %v\n",
			link, gatewayIP, webIP, s.segments, s.clientHellos, s.appData, s.streams)
		Expect(s.clientHellos).To(BeNumerically(">=", 1), "the gateway opened TLS to the backend (a ClientHello)")
		Expect(s.appData).To(BeNumerically(">=", 50), "requests travel as TLS application data")
		Expect(s.plaintext).To(BeEmpty(), "no HTTP request or status line in clear between gateway and backend")

		metrics := kubectl("-n", gatewayMTLSNS, "exec", webPod, "-c", "app", "--", "/probe", "get", "http://127.0.0.1:15020/metrics")
		Expect(metricValue(metrics, fmt.Sprintf(`knit_proxy_inbound_connections_total{peer_identity=%q,security="mtls"}`, gatewayID))).
			To(BeNumerically(">=", 1), "the backend's sidecar saw the gateway's SPIFFE ID")
		Expect(metricValue(metrics, `knit_proxy_inbound_connections_total{peer_identity="",security="refused"}`)).
			To(BeNumerically("<=", 0), "the backend's sidecar refused nothing from the gateway")
		GinkgoWriter.Print(kubectl("-n", gatewayMTLSNS, "get", "gateway,httproute,pods", "-o", "wide"))
	})
}
