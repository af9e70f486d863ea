//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// gatewayNS holds a meshed backend and a Gateway of class knit with an HTTPRoute to it.
const gatewayNS = "knit-e2e-gateway"

// gatewaySpecs are the acceptance checks of issue #15 on real pods; they run in order inside
// the suite's ordered container (after mesh, before deletion).
func gatewaySpecs() {
	It("serves an HTTPRoute to a meshed backend through a Gateway of class knit, reached from the host at the Gateway's address", Label("gateway"), func() {
		applyManifest(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, labels: {knit.dev/inject: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
%[2]s
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: %[1]s}
spec:
  gatewayClassName: knit
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: %[1]s}
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.example.com]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`, gatewayNS, probeDeployment(gatewayNS, "web", 2)))
		// The gateway's objects are the Gateway's, not the Mesh's: they go with the namespace.
		DeferCleanup(func() { kubectl("delete", "namespace", gatewayNS, "--timeout=3m") })
		kubectl("-n", gatewayNS, "rollout", "status", "deployment/web", "--timeout=180s")
		start := time.Now()
		Eventually(func() string {
			out, _ := tryKubectl("-n", gatewayNS, "get", "gateway", "edge", "-o", `jsonpath={.status.conditions[?(@.type=="Programmed")].status}`)
			return out
		}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Equal("True"), "the gateway's proxy is Ready with its configuration")
		GinkgoWriter.Printf("Gateway Programmed %s after its backend was Ready\n", time.Since(start).Round(time.Second))
		Expect(kubectl("-n", gatewayNS, "get", "httproute", "web", "-o",
			`jsonpath={.status.parents[0].controllerName} {.status.parents[0].conditions[?(@.type=="Accepted")].status}`)).
			To(Equal("knit.dev/gateway-controller True"))
		Expect(kubectl("-n", gatewayNS, "get", "gateway", "edge", "-o", `jsonpath={.status.listeners[0].attachedRoutes}`)).To(Equal("1"))
		addr := kubectl("-n", gatewayNS, "get", "gateway", "edge", "-o", `jsonpath={.status.addresses[0].value}`)
		Expect(kubectl("-n", gatewayNS, "get", "service", "edge-knit", "-o", "jsonpath={.spec.clusterIP}")).To(Equal(addr))

		get := func(host string) (int, string, error) {
			req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/shop", nil)
			if err != nil {
				return 0, "", err
			}
			req.Host = host
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
			code, body, err := get("shop.example.com")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(Equal(http.StatusOK), body)
			g.Expect(body).To(HavePrefix("hello from web-"))
			g.Expect(strings.TrimSpace(body)).To(HaveSuffix("/shop"))
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
		for range 20 {
			code, body, err := get("shop.example.com")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(http.StatusOK), body)
		}
		code, _, err := get("other.example.com")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusNotFound), "a hostname no route serves")
		GinkgoWriter.Print(kubectl("-n", gatewayNS, "get", "gateway,httproute,pods", "-o", "wide"))
	})
}
