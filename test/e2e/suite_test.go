//go:build e2e

// Package e2e is knit's end-to-end suite against a real local cluster on this machine
// (hack/cluster-up.sh: containerd, kubelet, real pods). `make e2e` runs it; it needs root.
// Specs are labelled so parts can be selected, e.g. `make e2e E2E_LABELS=network,cluster`:
//
//	network   the pod and service CIDRs route locally before any component starts
//	cluster   node Ready, real pods
//	dns       svc.cluster.local names resolve in pods, nothing else does
//	install   images, cert-manager from its manifests, the operator from config/default
//	operator  the operator pod is Ready; deleting it brings a new one that carries on
//	mesh      the sample Mesh is reconciled and its conditions appear; within 60 s of the apply the
//	          control-plane pods are Ready and `kubectl get mesh` shows READY=True
//	injection a namespace labelled knit.dev/inject=enabled: meshed pods 2/2 Ready, traffic from a
//	          client pod, the proxy's inbound request counter, a meshed Job completes, a deleted
//	          injector webhook configuration is recreated
//	mtls      workload certificates (45 s, the operator's test-only KNIT_TEST_WORKLOAD_CERT_DURATION)
//	          and mutual TLS: a client outside the mesh is served under PERMISSIVE and refused
//	          under STRICT while kubelet probes pass; a meshed client's 100 req/s reach a meshed
//	          server as TLS records on the server pod's veth (AF_PACKET capture), no HTTP in
//	          clear; zero failures across 3 renewals and a root rotation, no pod restarted
//	discovery a meshed client and meshed Services routed by the control plane's xDS: spread over
//	          3 endpoints, an HTTPRoute 90/10 split, ≥ 99.9 % success with retries while an endpoint
//	          is killed, the last config kept with the control plane stopped, and reconnection
//	gateway-mtls  under mtls.mode STRICT, a Gateway of class knit reaches a meshed backend over
//	          mutual TLS with the Gateway's own SPIFFE ID: requests from the host answered, TLS
//	          records and no HTTP in clear on the backend pod's veth, the backend's sidecar counts
//	          the gateway's identity
//	observability  a Mesh with tracing to an OTLP/gRPC collector the suite runs on the node's
//	          address and metrics off: each meshed request's client- and server-sidecar spans
//	          arrive in one trace; the sidecar's probe port serves no /metrics
//	certmanager  cert-manager's controller scaled to 0 shows in `kubectl describe mesh` as
//	          DependenciesHealthy=False (CertManagerNotRunning) and back to True when it returns
//	teardown  cluster-down leaves no process, link, route, mount or rule behind
//	olm       on a cluster of its own (hack/olm.sh: OLM and knit's catalog): knit and cert-manager
//	          installed through a CatalogSource and a Subscription, the sample Mesh Ready, meshed
//	          traffic at 100 req/s without a failure through an operator upgrade in the channel,
//	          an uninstall through OLM (the mesh keeps running) and a reinstall; nothing recreated
//
// The suite drives the same scripts a person runs (hack/…) and looks at the cluster with kubectl.
// KNIT_E2E_KEEP_CLUSTER=1 skips the teardown (to look around after a run).
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "knit e2e (local cluster)")
}

// cluster holds the settings of hack/cluster/env.sh, read from the script itself (one place).
var cluster struct {
	repo, dir, kubeconfig, kubectl     string
	nodeName, nodeLink, bridge, nodeIP string
	podCIDR, serviceCIDR, apiIP, dnsIP string
	nodePodCIDR                        string
	components                         []string
}

var _ = BeforeSuite(func() {
	if os.Geteuid() != 0 {
		Skip("the e2e suite needs root (it starts a local cluster)")
	}
	repo, err := filepath.Abs("../..")
	Expect(err).NotTo(HaveOccurred())
	cluster.repo = repo
	out := script(`source hack/lib.sh; source hack/cluster/env.sh
echo "$CLUSTER_DIR|$KUBECONFIG_ADMIN|$KUBE_BIN/kubectl|$NODE_NAME|$NODE_LINK|$CNI_BRIDGE|$NODE_IP|$POD_CIDR|$SERVICE_CIDR|$API_SERVICE_IP|$DNS_SERVICE_IP|$NODE_POD_CIDR|${COMPONENTS[*]}"`)
	f := strings.Split(strings.TrimSpace(out), "|")
	Expect(f).To(HaveLen(13), out)
	cluster.dir, cluster.kubeconfig, cluster.kubectl = f[0], f[1], f[2]
	cluster.nodeName, cluster.nodeLink, cluster.bridge, cluster.nodeIP = f[3], f[4], f[5], f[6]
	cluster.podCIDR, cluster.serviceCIDR, cluster.apiIP, cluster.dnsIP = f[7], f[8], f[9], f[10]
	cluster.nodePodCIDR = f[11]
	cluster.components = strings.Fields(f[12])
})

// run runs a command from the repository root, streams its output into the Ginkgo log, and
// returns stdout+stderr; it fails the spec when the command fails.
func run(timeout time.Duration, name string, args ...string) string {
	GinkgoHelper()
	out, err := tryRun(timeout, name, args...)
	Expect(err).NotTo(HaveOccurred(), "%s %s:\n%s", name, strings.Join(args, " "), out)
	return out
}

// errClusterDown: the node's link (and with it the API server's address and the cluster's
// routes) is gone, taken down by cluster-down, maybe another process's. Nothing is sent then:
// the API server's address would be routed off this machine. (A kubectl that did so met the
// sandbox's egress proxy, whose certificate has no IP SANs: the "x509" failures of 12-01/02.)
var errClusterDown = errors.New("the local cluster is down (its node link is gone): not calling the API server, whose address would route off this machine")

// clusterUp says whether the node's link, which carries the API server's address, exists.
func clusterUp() bool {
	_, err := net.InterfaceByName(cluster.nodeLink)
	return err == nil
}

func tryRun(timeout time.Duration, name string, args ...string) (string, error) {
	if name == cluster.kubectl && !clusterUp() {
		return "", errClusterDown
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = cluster.repo
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.String(), err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return buf.String(), fmt.Errorf("timed out after %s", timeout)
	}
}

func script(s string) string {
	GinkgoHelper()
	return run(time.Minute, "bash", "-c", s)
}

func kubectl(args ...string) string {
	GinkgoHelper()
	return run(2*time.Minute, cluster.kubectl, append([]string{"--kubeconfig", cluster.kubeconfig}, args...)...)
}

func tryKubectl(args ...string) (string, error) {
	return tryRun(time.Minute, cluster.kubectl, append([]string{"--kubeconfig", cluster.kubeconfig}, args...)...)
}

// dumpState prints what helps to understand a failed spec: pods, events, component log tails.
func dumpState() {
	if cluster.kubectl == "" {
		return
	}
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "nodes", "-o", "wide"},
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"get", "mesh", "-o", "yaml"},
		{"-n", "knit-operator", "logs", "deploy/knit-controller-manager", "--tail=80"},
	} {
		out, _ := tryKubectl(args...)
		fmt.Fprintf(&b, "\n$ kubectl %s\n%s", strings.Join(args, " "), out)
	}
	for _, c := range cluster.components {
		out, _ := tryRun(10*time.Second, "tail", "-n", "25", filepath.Join(cluster.dir, "logs", c+".log"))
		fmt.Fprintf(&b, "\n--- %s.log (last 25 lines)\n%s", c, out)
	}
	AddReportEntry("cluster state after failure", b.String())
	GinkgoWriter.Print(b.String())
}
