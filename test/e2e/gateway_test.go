//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

	meshGatewaySpecs()
}

// meshGatewayNS holds a meshed backend and the Gateway that the Mesh's spec.gateways entry
// meshGatewayName makes there.
const (
	meshGatewayNS   = "knit-e2e-meshgw"
	meshGatewayName = "ingress"
)

// setMeshGateway sets the Mesh's spec.gateways to the one entry meshGatewayName with replicas,
// or, with replicas 0, removes every entry.
func setMeshGateway(replicas int) {
	GinkgoHelper()
	patch := `{"spec":{"gateways":null}}`
	if replicas > 0 {
		patch = fmt.Sprintf(`{"spec":{"gateways":[{"name":%q,"namespace":%q,"replicas":%d,"serviceType":"ClusterIP","ports":[{"name":"http","port":80,"protocol":"HTTP"}]}]}}`,
			meshGatewayName, meshGatewayNS, replicas)
	}
	kubectl("patch", "mesh", "default", "--type", "merge", "-p", patch)
}

// gatewayPods are the names of the pods (terminating ones too) of the gateway meshGatewayName.
func gatewayPods() []string {
	out, _ := tryKubectl("-n", meshGatewayNS, "get", "pods", "-l", "app="+meshGatewayName+"-knit", "-o", `jsonpath={.items[*].metadata.name}`)
	return strings.Fields(out)
}

// hostLoad runs the e2e probe's steady load (`probe load URL RATE`, which the meshed clients of
// the mtls and upgrade specs run in pods) as a process on the host: a client outside the
// cluster, reaching the gateway at its Service address as the host's routes take it there.
type hostLoad struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startHostLoad(url string, rate int) *hostLoad {
	GinkgoHelper()
	probe := filepath.Join(cluster.repo, "bin", "images", "bin", "probe") // built by hack/images.sh
	_, err := os.Stat(probe)
	Expect(err).NotTo(HaveOccurred(), "the e2e probe binary (label install builds it)")
	h := &hostLoad{cmd: exec.Command(probe, "load", url, fmt.Sprint(rate)), done: make(chan struct{})}
	h.cmd.Stdout = lockedWriter{&h.mu, &h.out}
	h.cmd.Stderr = lockedWriter{&h.mu, &h.out}
	Expect(h.cmd.Start()).To(Succeed())
	go func() { _ = h.cmd.Wait(); close(h.done) }()
	return h
}

// counts are the load's totals so far and its failure lines.
func (h *hostLoad) counts() (ok, fail int, failures []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return loadCounts(h.out.String())
}

// stop ends the load as a person would (SIGTERM: it waits for the requests in flight and
// prints its totals) and returns them.
func (h *hostLoad) stop() (ok, fail int, failures []string) {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
	return h.counts()
}

// meshGatewaySpecs are the checks of issue #15 for Mesh.spec.gateways: an entry makes a Gateway
// of class knit that serves like a person's; its proxies drain when it scales from 2 to 1 and
// when it rolls, under 100 req/s from the host, without a failed request; and removing the entry
// removes what the Mesh made, nothing else. The specs share one namespace, gateway and load.
func meshGatewaySpecs() {
	Context("a Mesh spec.gateways entry", Ordered, Label("gateway"), func() {
		var (
			addr string
			load *hostLoad
		)
		expectNoFailures := func(when string) {
			GinkgoHelper()
			ok, fail, failures := load.counts()
			GinkgoWriter.Printf("host load through the gateway %s: %d ok, %d failed\n", when, ok, fail)
			Expect(fail).To(BeZero(), "failed requests %s:\n%s", when, strings.Join(failures, "\n"))
		}
		// moreRequests waits until n more requests than so far have succeeded.
		moreRequests := func(n int) {
			GinkgoHelper()
			before, _, _ := load.counts()
			Eventually(func() int { ok, _, _ := load.counts(); return ok }).WithTimeout(30*time.Second).WithPolling(500*time.Millisecond).
				Should(BeNumerically(">=", before+n), "the load goes on at 100 req/s")
		}

		AfterAll(func() {
			if load != nil {
				load.stop()
			}
			if meshField("{.metadata.name}") == "default" {
				setMeshGateway(0)
			}
			_, _ = tryKubectl("delete", "namespace", meshGatewayNS, "--wait=false")
		})

		It("makes a Gateway of class knit for the entry; an HTTPRoute attached to it serves a meshed backend to the host at its address", func() {
			// Everything here but the gateway is a person's: the removal spec checks it stays.
			applyManifest(meshedNamespace(meshGatewayNS) + httpService(meshGatewayNS, "web") + probeDeployment(meshGatewayNS, "web", 2) + fmt.Sprintf(`---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: %[1]s}
spec:
  parentRefs: [{name: %[2]s}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`, meshGatewayNS, meshGatewayName))
			setMeshGateway(2)
			start := time.Now()
			kubectl("-n", meshGatewayNS, "rollout", "status", "deployment/web", "--timeout=180s")
			GinkgoWriter.Printf("backend Ready %s after the apply\n", time.Since(start).Round(time.Second))
			Eventually(func() string {
				out, _ := tryKubectl("-n", meshGatewayNS, "get", "gateway", meshGatewayName, "-o", `jsonpath={.status.conditions[?(@.type=="Programmed")].status}`)
				return out
			}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(Equal("True"), "the entry's Gateway is Programmed")
			GinkgoWriter.Printf("the entry's Gateway Programmed %s after the apply\n", time.Since(start).Round(time.Second))
			Expect(kubectl("-n", meshGatewayNS, "get", "gateway", meshGatewayName, "-o",
				`jsonpath={.spec.gatewayClassName} {.metadata.ownerReferences[?(@.controller==true)].kind}/{.metadata.ownerReferences[?(@.controller==true)].name}`)).
				To(Equal("knit Mesh/default"), "a Gateway of class knit that the Mesh owns")
			kubectl("-n", meshGatewayNS, "rollout", "status", "deployment/"+meshGatewayName+"-knit", "--timeout=120s")
			Expect(kubectl("-n", meshGatewayNS, "get", "deployment", meshGatewayName+"-knit", "-o", "jsonpath={.status.readyReplicas}")).To(Equal("2"))
			Expect(kubectl("-n", meshGatewayNS, "get", "httproute", "web", "-o",
				`jsonpath={.status.parents[0].controllerName} {.status.parents[0].conditions[?(@.type=="Accepted")].status}`)).
				To(Equal("knit.dev/gateway-controller True"))
			addr = kubectl("-n", meshGatewayNS, "get", "gateway", meshGatewayName, "-o", `jsonpath={.status.addresses[0].value}`)
			Expect(kubectl("-n", meshGatewayNS, "get", "service", meshGatewayName+"-knit", "-o", "jsonpath={.spec.clusterIP}")).To(Equal(addr))

			c := &http.Client{Timeout: 5 * time.Second}
			get := func() (int, string, error) {
				resp, err := c.Get("http://" + addr + "/ingress")
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
				return resp.StatusCode, string(body), err
			}
			// The Service's endpoints reach the host's routes a moment after the pods are Ready.
			Eventually(func(g Gomega) {
				code, body, err := get()
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(code).To(Equal(http.StatusOK), body)
				g.Expect(body).To(HavePrefix("hello from web-"))
			}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
			for range 20 {
				code, body, err := get()
				Expect(err).NotTo(HaveOccurred())
				Expect(code).To(Equal(http.StatusOK), body)
			}
		})

		It("drains a gateway proxy when the entry scales from 2 to 1 replica under 100 req/s from the host, without a failed request", func() {
			Expect(addr).NotTo(BeEmpty(), "the gateway of the spec before")
			load = startHostLoad("http://"+addr+"/load", 100)
			moreRequests(200)
			before := gatewayPods()
			Expect(before).To(HaveLen(2))
			setMeshGateway(1)
			Eventually(gatewayPods).WithTimeout(time.Minute).WithPolling(500*time.Millisecond).Should(HaveLen(1), "one gateway pod left, the other gone")
			Expect(before).To(ContainElement(gatewayPods()[0]), "scaling down keeps a pod that ran")
			moreRequests(200)
			expectNoFailures("across the scale-down from 2 to 1")
		})

		It("rolls the gateway's proxies under 100 req/s from the host without a failed request", func() {
			Expect(load).NotTo(BeNil(), "the load of the spec before")
			before := gatewayPods()
			kubectl("-n", meshGatewayNS, "rollout", "restart", "deployment/"+meshGatewayName+"-knit")
			kubectl("-n", meshGatewayNS, "rollout", "status", "deployment/"+meshGatewayName+"-knit", "--timeout=120s")
			Eventually(gatewayPods).WithTimeout(time.Minute).WithPolling(500*time.Millisecond).Should(HaveLen(1), "the old gateway pod gone")
			Expect(before).NotTo(ContainElement(gatewayPods()[0]), "a new gateway pod")
			moreRequests(200)
			ok, fail, failures := load.stop()
			load = nil
			GinkgoWriter.Printf("host load through the gateway in all: %d ok, %d failed\n", ok, fail)
			Expect(fail).To(BeZero(), "failed requests across the scale-down and the rollout:\n%s", strings.Join(failures, "\n"))
		})

		It("removes the entry's Gateway, Deployment, Service and parameters when the entry is removed, and nothing a person made", func() {
			setMeshGateway(0)
			for _, obj := range []string{"gateway/" + meshGatewayName, "deployment/" + meshGatewayName + "-knit", "service/" + meshGatewayName + "-knit",
				"serviceaccount/" + meshGatewayName + "-knit", "configmap/" + meshGatewayName + "-knit-parameters"} {
				Eventually(func() string {
					out, _ := tryKubectl("-n", meshGatewayNS, "get", obj, "--ignore-not-found", "-o", "name")
					return out
				}).WithTimeout(time.Minute).WithPolling(time.Second).Should(BeEmpty(), "%s goes with the entry", obj)
			}
			Eventually(gatewayPods).WithTimeout(time.Minute).WithPolling(time.Second).Should(BeEmpty())
			for _, obj := range []string{"httproute/web", "deployment/web", "service/web"} {
				kubectl("-n", meshGatewayNS, "get", obj)
			}
			Expect(kubectl("-n", meshGatewayNS, "get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}")).To(Equal("2"))
		})
	})
}
