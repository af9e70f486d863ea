//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

const testNamespace = "knit-e2e"

// ipAt returns the network address of cidr plus c in the third and d in the fourth byte.
func ipAt(cidr string, c, d byte) string {
	GinkgoHelper()
	_, ipnet, err := net.ParseCIDR(cidr)
	Expect(err).NotTo(HaveOccurred())
	ip := ipnet.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2]+c, ip[3]+d).String()
}

func routeDev(ip string) string {
	GinkgoHelper()
	out := run(10*time.Second, "ip", "-o", "route", "get", ip)
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "dev" && i+1 < len(f) {
			return f[i+1]
		}
	}
	Fail("no dev in: " + out)
	return ""
}

func componentsRunning() []string {
	GinkgoHelper()
	out := script(`source hack/lib.sh; source hack/cluster/env.sh
for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null && echo "$c"; done; true`)
	return strings.Fields(out)
}

// podRun runs a one-shot pod and returns its log once it has ended; ok tells whether it Succeeded.
func podRun(name, image string, args ...string) (log string, ok bool) {
	GinkgoHelper()
	_, _ = tryKubectl("-n", testNamespace, "delete", "pod", name, "--ignore-not-found", "--wait=true")
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    args: [%s]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, name, testNamespace, image, strings.Join(quoted, ", "))
	applyManifest(manifest)
	var phase string
	Eventually(func() string {
		phase, _ = tryKubectl("-n", testNamespace, "get", "pod", name, "-o", "jsonpath={.status.phase}")
		return phase
	}).WithTimeout(90*time.Second).WithPolling(time.Second).Should(Or(Equal("Succeeded"), Equal("Failed")), "pod %s never ended", name)
	log = kubectl("-n", testNamespace, "logs", name)
	return log, phase == "Succeeded"
}

func applyManifest(m string) {
	GinkgoHelper()
	cmd := exec.Command(cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(m)
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
}

func imageRef(name string) string {
	GinkgoHelper()
	key := strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_IMAGE"
	out := script(`eval "$(hack/images.sh --refs)"; echo "${` + key + `}"`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	ref := lines[len(lines)-1]
	Expect(ref).NotTo(BeEmpty(), out)
	return ref
}

func meshField(path string) string {
	out, _ := tryKubectl("get", "mesh", "default", "-o", "jsonpath="+path)
	return strings.TrimSpace(out)
}

func operatorPod() (name, uid string) {
	out, _ := tryKubectl("-n", "knit-operator", "get", "pods", "-l", "control-plane=controller-manager",
		"--field-selector", "status.phase=Running",
		"-o", `jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{end}{range .items[*]}{.metadata.name}{" "}{.metadata.uid}{" "}{.metadata.deletionTimestamp}{"\n"}{end}`)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 { // no deletionTimestamp
			return f[0], f[1]
		}
	}
	return "", ""
}

var _ = Describe("knit on a local cluster", Ordered, func() {
	tornDown := false

	AfterEach(func() {
		if CurrentSpecReport().Failed() {
			dumpState()
		}
	})

	AfterAll(func() {
		if !tornDown && os.Getenv("KNIT_E2E_KEEP_CLUSTER") == "" && os.Geteuid() == 0 {
			_, _ = tryRun(3*time.Minute, "hack/cluster-down.sh")
		}
	})

	It("routes the pod and service CIDRs locally before any component starts", Label("network"), func() {
		if os.Getenv("KNIT_E2E_KEEP_CLUSTER") == "" {
			run(3*time.Minute, "hack/cluster-down.sh") // start from nothing: the check must come first
		}
		if len(componentsRunning()) > 0 {
			Skip("a cluster is already up (KNIT_E2E_KEEP_CLUSTER): the before-start check needs make cluster-down")
		}
		run(5*time.Minute, "hack/cluster-up.sh", "network")
		Expect(componentsRunning()).To(BeEmpty(), "no component may run before the routes are checked")
		for _, ip := range []string{
			ipAt(cluster.nodePodCIDR, 0, 77), ipAt(cluster.podCIDR, 200, 9), // a pod, and beyond the node's /24
			ipAt(cluster.serviceCIDR, 0, 77), ipAt(cluster.serviceCIDR, 255, 254), cluster.apiIP, cluster.dnsIP,
		} {
			Expect(routeDev(ip)).To(Equal(cluster.nodeLink), "%s must route to the local veth %s, never off the machine", ip, cluster.nodeLink)
		}
		Expect(run(10*time.Second, "iptables", "-t", "mangle", "-S", "FORWARD")).To(ContainSubstring("-j KNIT-GUARD"),
			"forwarded packets are guarded before forwarding is on")
	})

	It("brings the node Ready and runs real pods", Label("cluster"), func() {
		start := time.Now()
		run(10*time.Minute, "hack/cluster-up.sh")
		GinkgoWriter.Printf("cluster-up took %s\n", time.Since(start).Round(time.Second))
		Expect(kubectl("get", "node", cluster.nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)).To(Equal("True"))
		for _, ip := range []string{ipAt(cluster.nodePodCIDR, 0, 77), ipAt(cluster.serviceCIDR, 0, 77)} {
			Expect(routeDev(ip)).To(Or(Equal(cluster.nodeLink), Equal(cluster.bridge)))
		}
		// Every server of ours listens on the node IP or on loopback only.
		pids := script(`source hack/lib.sh; source hack/cluster/env.sh
for c in "${COMPONENTS[@]}"; do p=$(pid_of "$c") && echo "$c $p"; done; true`)
		Expect(strings.Fields(pids)).To(HaveLen(2*len(cluster.components)), "every component runs: %s", pids)
		sockets := run(10*time.Second, "ss", "-ltnupH")
		checked := 0
		for _, line := range strings.Split(pids, "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			for _, s := range strings.Split(sockets, "\n") {
				if !strings.Contains(s, "pid="+f[1]+",") {
					continue
				}
				local := strings.Fields(s)[4]
				Expect(local).To(Or(HavePrefix(cluster.nodeIP+":"), HavePrefix("127.0.0.1:"), HavePrefix("[::1]:")),
					"%s listens on %s: only the node IP or loopback are allowed", f[0], local)
				checked++
			}
		}
		Expect(checked).To(BeNumerically(">=", 6), "listening sockets of the components:\n%s", sockets)

		_, _ = tryKubectl("create", "namespace", testNamespace)
		// A pod of the pause image alone: the sandbox and the container are both local images.
		applyManifest(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: pause, namespace: %s}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - {name: pause, image: %s, imagePullPolicy: Never, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}
`, testNamespace, imageRef("pause")))
		kubectl("-n", testNamespace, "wait", "pod/pause", "--for=condition=Ready", "--timeout=90s")
		podIP := kubectl("-n", testNamespace, "get", "pod", "pause", "-o", "jsonpath={.status.podIP}")
		_, podNet, _ := net.ParseCIDR(cluster.nodePodCIDR)
		Expect(podNet.Contains(net.ParseIP(podIP))).To(BeTrue(), "pod IP %s in %s", podIP, cluster.nodePodCIDR)
	})

	It("never pulls an image: a missing one fails on loopback, without a DNS lookup", Label("cluster", "network"), func() {
		// The kubelet asks containerd to pull any image it lacks; containerd's only way out is a
		// proxy on a closed loopback port (hack/cluster-up.sh), so the pull fails right there.
		applyManifest(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: missing-image, namespace: %s}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - {name: main, image: knit.local/knit/not-built:e2e, imagePullPolicy: IfNotPresent, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}
`, testNamespace))
		Eventually(func() string {
			out, _ := tryKubectl("-n", testNamespace, "get", "events", "--field-selector", "involvedObject.name=missing-image,reason=Failed", "-o", "jsonpath={.items[*].message}")
			return out
		}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(ContainSubstring("proxyconnect tcp: dial tcp 127.0.0.1:9"))
		kubectl("-n", testNamespace, "delete", "pod", "missing-image", "--wait=false")
	})

	It("resolves svc.cluster.local names in pods and nothing else", Label("dns"), func() {
		run(5*time.Minute, "hack/images.sh", "--import", "e2e-probe")
		probe := imageRef("e2e-probe")
		out, ok := podRun("dns-api", probe, "dns", "kubernetes.default.svc.cluster.local")
		Expect(ok).To(BeTrue(), out)
		Expect(strings.Fields(out)).To(ContainElement(cluster.apiIP))
		out, ok = podRun("dns-search", probe, "dns", "kube-dns.kube-system")
		Expect(ok).To(BeTrue(), out)
		Expect(strings.Fields(out)).To(ContainElement(cluster.dnsIP))
		out, ok = podRun("dns-outside", probe, "nodns", "example.com")
		Expect(ok).To(BeTrue(), "a name outside the cluster must not resolve (no forwarding off the machine): %s", out)
	})

	It("installs cert-manager from its manifests and the operator from config/default", Label("install"), func() {
		start := time.Now()
		run(30*time.Minute, "hack/images.sh")
		run(10*time.Minute, "hack/cluster/install.sh", "cert-manager")
		for _, d := range []string{"cert-manager", "cert-manager-webhook", "cert-manager-cainjector"} {
			Expect(kubectl("-n", "cert-manager", "get", "deployment", d, "-o", "jsonpath={.status.readyReplicas}")).To(Equal("1"), d)
		}
		run(10*time.Minute, "hack/cluster/install.sh", "operator")
		GinkgoWriter.Printf("images + cert-manager + operator took %s\n", time.Since(start).Round(time.Second))
	})

	It("runs the operator in a Ready pod", Label("operator"), func() {
		kubectl("-n", "knit-operator", "rollout", "status", "deployment/knit-controller-manager", "--timeout=100s")
		Eventually(func(g Gomega) {
			name, _ := operatorPod()
			g.Expect(name).NotTo(BeEmpty(), "a running operator pod")
			ready, _ := tryKubectl("-n", "knit-operator", "get", "pod", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			g.Expect(ready).To(Equal("True"))
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		img := kubectl("-n", "knit-operator", "get", "deployment", "knit-controller-manager", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
		Expect(img).To(Equal(imageRef("controller")), "the image named in config/images")
	})

	It("reconciles the sample Mesh and shows its conditions", Label("mesh"), func() {
		run(2*time.Minute, "hack/cluster/install.sh", "sample")
		Eventually(func(g Gomega) {
			gen := meshField("{.metadata.generation}")
			g.Expect(gen).NotTo(BeEmpty())
			g.Expect(meshField("{.status.observedGeneration}")).To(Equal(gen))
			g.Expect(meshField(`{.status.conditions[?(@.type=="Reconciled")].status}`)).To(Equal("True"))
			types := strings.Fields(meshField(`{range .status.conditions[*]}{.type}{" "}{end}`))
			g.Expect(types).To(ContainElements("Ready", "Reconciled", "Available", "ControlPlaneReady", "CertificatesReady", "Degraded"))
		}).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		GinkgoWriter.Print(kubectl("get", "mesh"))
	})

	It("replaces a deleted operator pod and the new one carries on", Label("operator", "restart"), func() {
		oldName, oldUID := operatorPod()
		Expect(oldName).NotTo(BeEmpty(), "no running operator pod")
		kubectl("-n", "knit-operator", "delete", "pod", oldName, "--wait=false")
		var newName string
		Eventually(func(g Gomega) {
			name, uid := operatorPod()
			g.Expect(uid).NotTo(BeEmpty())
			g.Expect(uid).NotTo(Equal(oldUID))
			ready, _ := tryKubectl("-n", "knit-operator", "get", "pod", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			g.Expect(ready).To(Equal("True"))
			newName = name
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		// It carries on: a change to the Mesh after the restart is reconciled by the new pod.
		format := "JSON"
		if meshField("{.spec.observability.accessLogFormat}") == "JSON" {
			format = "Text"
		}
		kubectl("patch", "mesh", "default", "--type", "merge", "-p", fmt.Sprintf(`{"spec":{"observability":{"accessLogFormat":%q}}}`, format))
		gen := meshField("{.metadata.generation}")
		Eventually(func(g Gomega) {
			g.Expect(meshField("{.status.observedGeneration}")).To(Equal(gen))
			g.Expect(meshField(`{.status.conditions[?(@.type=="Reconciled")].observedGeneration}`)).To(Equal(gen))
			g.Expect(meshField(`{.status.conditions[?(@.type=="Reconciled")].status}`)).To(Equal("True"))
		}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Succeed(), "the new operator pod %s must reconcile generation %s", newName, gen)
	})

	It("leaves no process, link, route, mount or rule behind after cluster-down", Label("teardown"), func() {
		if os.Getenv("KNIT_E2E_KEEP_CLUSTER") != "" {
			Skip("KNIT_E2E_KEEP_CLUSTER is set")
		}
		run(3*time.Minute, "hack/cluster-down.sh")
		tornDown = true
		GinkgoWriter.Print(run(time.Minute, "hack/cluster/check-clean.sh"))
		_, err := tryRun(5*time.Second, "ip", "link", "show", cluster.nodeLink)
		Expect(err).To(HaveOccurred(), "link %s must be gone", cluster.nodeLink)
		routes := run(5*time.Second, "ip", "-o", "route", "show")
		Expect(routes).NotTo(ContainSubstring(strings.Split(cluster.podCIDR, "/")[0]))
		Expect(routes).NotTo(ContainSubstring(strings.Split(cluster.serviceCIDR, "/")[0]))
	})
})
