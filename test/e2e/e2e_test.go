//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
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
	Expect(clusterUp()).To(BeTrue(), errClusterDown.Error())
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

// controlPlanePods maps each running, not deleted control-plane pod to its Ready status.
func controlPlanePods() map[string]string {
	out, _ := tryKubectl("-n", "knit-system", "get", "pods", "-l", "app=knit-controlplane",
		"-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.metadata.deletionTimestamp}{"\n"}{end}`)
	pods := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[1] == "Running" { // no deletionTimestamp
			pods[f[0]] = f[2]
		} else if len(f) == 2 && f[1] == "Running" {
			pods[f[0]] = ""
		}
	}
	return pods
}

// readyPods maps each running, not deleted pod of a namespace to its Ready status.
func readyPods(ns string) map[string]string {
	out, _ := tryKubectl("-n", ns, "get", "pods",
		"-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.metadata.deletionTimestamp}{"\n"}{end}`)
	pods := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[1] == "Running" {
			pods[f[0]] = f[2]
		}
	}
	return pods
}

// tableColumn returns the value in column col of the row named row of kubectl's table output.
func tableColumn(table, row, col string) string {
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) < 2 {
		return ""
	}
	idx := slices.Index(strings.Fields(lines[0]), col)
	if idx < 0 {
		return ""
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > idx && f[0] == row {
			return f[idx]
		}
	}
	return ""
}

// meshCondition returns a field (status, reason, message) of a condition of the Mesh.
func meshCondition(typ, field string) string {
	return meshField(fmt.Sprintf(`{.status.conditions[?(@.type==%q)].%s}`, typ, field))
}

// inboundRequests sums knit_requests_total over the series labelled direction="inbound".
func inboundRequests(metrics string) float64 {
	var sum float64
	for _, l := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(l, "knit_requests_total{") || !strings.Contains(l, `direction="inbound"`) {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
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
		applied := time.Now()
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

		// Within 60 s of the apply: the control-plane pods run Ready and `kubectl get mesh` says READY=True.
		deadline := applied.Add(60 * time.Second)
		Eventually(func(g Gomega) {
			pods := controlPlanePods()
			g.Expect(pods).NotTo(BeEmpty(), "control-plane pods in knit-system")
			g.Expect(strconv.Itoa(len(pods))).To(Equal(meshField("{.spec.controlPlane.replicas}")), "one pod per control-plane replica: %v", pods)
			for name, ready := range pods {
				g.Expect(ready).To(Equal("True"), "control-plane pod %s Ready", name)
			}
			out, err := tryKubectl("get", "mesh")
			g.Expect(err).NotTo(HaveOccurred(), out)
			g.Expect(tableColumn(out, "default", "READY")).To(Equal("True"), out)
		}).WithTimeout(time.Until(deadline)).WithPolling(time.Second).Should(Succeed(),
			"the control plane must be Ready and the Mesh READY=True within 60 s of applying the sample")
		GinkgoWriter.Printf("control plane Ready and Mesh READY=True %s after applying the sample\n", time.Since(applied).Round(time.Second))
		GinkgoWriter.Print(kubectl("get", "mesh"))
		GinkgoWriter.Print(kubectl("-n", "knit-system", "get", "pods", "-l", "app=knit-controlplane", "-o", "wide"))
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

	It("injects the proxy into a labelled namespace: pods, traffic, metrics, a Job, and a repaired webhook", Label("injection"), func() {
		const ns = "knit-e2e-mesh"
		probe := imageRef("e2e-probe")
		applyManifest(meshedNamespace(ns) + httpService(ns, "echo") + probeDeployment(ns, "echo", 2))
		start := time.Now()
		kubectl("-n", ns, "rollout", "status", "deployment/echo", "--timeout=120s")
		GinkgoWriter.Printf("meshed Deployment of 2 Ready after %s\n", time.Since(start).Round(time.Second))
		pods := kubectl("-n", ns, "get", "pods", "-l", "app=echo")
		GinkgoWriter.Print(pods)

		names := strings.Fields(kubectl("-n", ns, "get", "pods", "-l", "app=echo", "--field-selector", "status.phase=Running",
			"-o", `jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{end}{range .items[*]}{.metadata.name}{" "}{end}`))
		Expect(names).To(HaveLen(2), pods)
		var podIPs []string
		for _, name := range names {
			Expect(tableColumn(pods, name, "READY")).To(Equal("2/2"), "app + knit-proxy sidecar ready:\n%s", pods)
			Expect(kubectl("-n", ns, "get", "pod", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)).To(Equal("True"))
			inits := strings.Fields(kubectl("-n", ns, "get", "pod", name, "-o", `jsonpath={range .spec.initContainers[*]}{.name}{" "}{end}`))
			Expect(inits).To(Equal([]string{"knit-init", "knit-proxy"}), "init containers of %s", name)
			Expect(kubectl("-n", ns, "get", "pod", name, "-o", `jsonpath={.spec.initContainers[?(@.name=="knit-proxy")].restartPolicy}`)).To(Equal("Always"), "knit-proxy is a native sidecar")
			Expect(kubectl("-n", ns, "get", "pod", name, "-o", `jsonpath={.status.initContainerStatuses[?(@.name=="knit-proxy")].ready}`)).To(Equal("true"))
			podIPs = append(podIPs, kubectl("-n", ns, "get", "pod", name, "-o", "jsonpath={.status.podIP}"))
		}

		// A client outside the mesh talks to a meshed pod; the pod's proxy counts the requests inbound.
		metricsURL := fmt.Sprintf("http://%s:15020/metrics", podIPs[0])
		out, ok := podRun("metrics-before", probe, "get", metricsURL)
		Expect(ok).To(BeTrue(), out)
		before := inboundRequests(out)
		const n = 5
		out, ok = podRun("client-pod-ip", probe, "http", fmt.Sprintf("http://%s:8080/hello", podIPs[0]), fmt.Sprint(n))
		GinkgoWriter.Print(out)
		Expect(ok).To(BeTrue(), out)
		Expect(strings.Count(out, "200 OK hello from "+names[0]+" /hello")).To(Equal(n), out)
		out, ok = podRun("client-service", probe, "http", fmt.Sprintf("http://echo.%s.svc.cluster.local/svc", ns), fmt.Sprint(n))
		GinkgoWriter.Print(out)
		Expect(ok).To(BeTrue(), out)
		Expect(strings.Count(out, "200 OK hello from echo-")).To(Equal(n), out)
		out, ok = podRun("metrics-after", probe, "get", metricsURL)
		Expect(ok).To(BeTrue(), out)
		after := inboundRequests(out)
		GinkgoWriter.Printf("knit_requests_total{direction=\"inbound\"} of %s: %v before, %v after\n", names[0], before, after)
		Expect(after).To(BeNumerically(">=", before+n), "the proxy of %s counts the %d requests sent to its pod IP:\n%s", names[0], n, out)

		// Deleting a meshed pod: the kubelet runs the proxy's preStop hook (knit-proxy drain) as
		// it signals the app, and signals the sidecar only once the app has exited, so the proxy
		// retires first and drains after. Its whole log is followed until the container stops.
		var proxyLog strings.Builder
		follow := exec.Command(cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "-n", ns, "logs", "-f", names[1], "-c", "knit-proxy")
		follow.Stdout = &proxyLog
		Expect(follow.Start()).To(Succeed())
		start = time.Now()
		kubectl("-n", ns, "delete", "pod", names[1], "--timeout=120s")
		GinkgoWriter.Printf("meshed pod %s deleted after %s\n", names[1], time.Since(start).Round(time.Second))
		waited := make(chan error, 1)
		go func() { waited <- follow.Wait() }()
		select {
		case <-waited:
		case <-time.After(time.Minute):
			_ = follow.Process.Kill()
		}
		plog := proxyLog.String()
		retired := strings.Index(plog, "drain requested on the admin port")
		drained := strings.Index(plog, `"retiredByPreStop":true`)
		Expect(retired).To(BeNumerically(">=", 0), "the preStop hook retired the proxy of %s:\n%s", names[1], plog)
		Expect(drained).To(BeNumerically(">", retired), "SIGTERM reached the sidecar after its preStop hook:\n%s", plog)

		// A Job in the meshed namespace gets the native sidecar and still completes.
		applyManifest(fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: client, namespace: %[1]s}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: main
        image: %[2]s
        imagePullPolicy: Never
        args: [http, "http://echo.%[1]s.svc.cluster.local/job", "3"]
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, ns, probe))
		start = time.Now()
		kubectl("-n", ns, "wait", "job/client", "--for=condition=Complete", "--timeout=120s")
		GinkgoWriter.Printf("meshed Job Complete after %s\n", time.Since(start).Round(time.Second))
		jobPod := kubectl("-n", ns, "get", "pods", "-l", "job-name=client", "-o", "jsonpath={.items[0].metadata.name}")
		Expect(kubectl("-n", ns, "get", "pod", jobPod, "-o", `jsonpath={.spec.initContainers[?(@.name=="knit-proxy")].restartPolicy}`)).To(Equal("Always"),
			"the Job's pod has the native sidecar")
		Expect(kubectl("-n", ns, "get", "pod", jobPod, "-o", "jsonpath={.status.phase}")).To(Equal("Succeeded"))
		GinkgoWriter.Print(kubectl("-n", ns, "logs", jobPod, "-c", "main"))

		// The operator repairs a deleted injector webhook configuration.
		const webhook = "knit-injector-v0-1-0"
		oldUID := kubectl("get", "mutatingwebhookconfiguration", webhook, "-o", "jsonpath={.metadata.uid}")
		Expect(oldUID).NotTo(BeEmpty())
		kubectl("delete", "mutatingwebhookconfiguration", webhook)
		start = time.Now()
		Eventually(func() string {
			uid, _ := tryKubectl("get", "mutatingwebhookconfiguration", webhook, "-o", "jsonpath={.metadata.uid}")
			return strings.TrimSpace(uid)
		}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(And(Not(BeEmpty()), Not(Equal(oldUID))),
			"the operator recreates %s", webhook)
		GinkgoWriter.Printf("%s recreated after %s\n", webhook, time.Since(start).Round(time.Second))
		_, _ = tryKubectl("delete", "namespace", ns, "--wait=false")
	})

	workloadsSpecs() // workloads_test.go
	mtlsSpecs()      // mtls_test.go

	It("upgrades v0.1.0 → v0.2.0 workload by workload with zero failed requests, rolls back, and upgrades InPlace", Label("upgrade"), func() {
		upgradeWorkloadByWorkload() // upgrade_test.go
	})

	It("tells in describe mesh when cert-manager's controller is not running, and recovers", Label("certmanager"), func() {
		// The operator judges cert-manager by the Lease kube-system/cert-manager-controller: the
		// installed controller must elect its leader there, under that name.
		args := kubectl("-n", "cert-manager", "get", "deployment", "cert-manager", "-o", `jsonpath={.spec.template.spec.containers[0].args}`)
		Expect(args).To(ContainSubstring("--leader-election-namespace=kube-system"))
		Expect(args).NotTo(ContainSubstring("--leader-elect=false"))
		Expect(kubectl("-n", "kube-system", "get", "lease", "cert-manager-controller", "-o", "jsonpath={.spec.holderIdentity}")).NotTo(BeEmpty())
		Expect(meshCondition("DependenciesHealthy", "status")).To(Equal("True"))

		kubectl("-n", "cert-manager", "scale", "deployment", "cert-manager", "--replicas=0")
		DeferCleanup(func() { _, _ = tryKubectl("-n", "cert-manager", "scale", "deployment", "cert-manager", "--replicas=1") })
		start := time.Now()
		Eventually(func(g Gomega) {
			g.Expect(meshCondition("DependenciesHealthy", "status")).To(Equal("False"))
			g.Expect(meshCondition("DependenciesHealthy", "reason")).To(Equal("CertManagerNotRunning"))
		}).WithTimeout(4*time.Minute).WithPolling(time.Second).Should(Succeed(), "DependenciesHealthy=False/CertManagerNotRunning after cert-manager stops")
		GinkgoWriter.Printf("DependenciesHealthy=False (CertManagerNotRunning) %s after scaling cert-manager to 0\n", time.Since(start).Round(time.Second))
		describe := kubectl("describe", "mesh", "default")
		GinkgoWriter.Print(describe)
		Expect(describe).To(ContainSubstring("CertManagerNotRunning"))
		Expect(describe).To(ContainSubstring("cert-manager's controller is not running"))

		kubectl("-n", "cert-manager", "scale", "deployment", "cert-manager", "--replicas=1")
		kubectl("-n", "cert-manager", "rollout", "status", "deployment/cert-manager", "--timeout=120s")
		start = time.Now()
		Eventually(func() string { return meshCondition("DependenciesHealthy", "status") }).
			WithTimeout(3*time.Minute).WithPolling(time.Second).Should(Equal("True"), "DependenciesHealthy returns to True once cert-manager runs")
		GinkgoWriter.Printf("DependenciesHealthy=True again %s after cert-manager was back\n", time.Since(start).Round(time.Second))
		GinkgoWriter.Print(kubectl("describe", "mesh", "default"))
	})

	It("never leaves a pod hanging for its trust bundle: labelled and created in the same second, with cert-manager stopped until then", Label("injection", "trustbundle"), func() {
		const ns = "knit-e2e-early"
		probe := imageRef("e2e-probe")
		kubectl("-n", "cert-manager", "scale", "deployment", "cert-manager", "--replicas=0")
		DeferCleanup(func() {
			_, _ = tryKubectl("-n", "cert-manager", "scale", "deployment", "cert-manager", "--replicas=1")
			_, _ = tryKubectl("delete", "namespace", ns, "--wait=false")
		})
		pod := `
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: %[2]s
    imagePullPolicy: Never
    args: [serve, ":8080"]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 2}
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}`
		// One apply: the namespace joins the mesh in the same second as its pods are created.
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, labels: {knit.dev/inject: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: %[1]s}
spec:`+pod+`
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: early, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: early}}
  template:
    metadata: {labels: {app: early}}
    spec:`+strings.ReplaceAll(pod, "\n  ", "\n      ")+`
`, ns, probe)
		Expect(clusterUp()).To(BeTrue(), errClusterDown.Error())
		cmd := exec.Command(cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		out, err := cmd.CombinedOutput()
		GinkgoWriter.Printf("kubectl apply: %v\n%s", err, out)

		// Admission does not wait for cert-manager: the trust bundle is copied by the operator.
		// Each pod's workload certificate is issued through cert-manager, though, so sidecars
		// become Ready only once it runs again (as with istio-csr).
		kubectl("-n", "cert-manager", "scale", "deployment", "cert-manager", "--replicas=1")
		// The bare pod is either refused, saying why, or admitted after the bundle: then it runs.
		if err != nil {
			Expect(string(out)).To(ContainSubstring("has no ConfigMap knit-trust-bundle yet"))
		} else {
			kubectl("-n", ns, "wait", "pod/bare", "--for=condition=Ready", "--timeout=120s")
		}
		// The Deployment's pod is created again by its ReplicaSet until admitted, and runs meshed.
		start := time.Now()
		kubectl("-n", ns, "rollout", "status", "deployment/early", "--timeout=120s")
		GinkgoWriter.Printf("Deployment created with the namespace label Ready after %s\n", time.Since(start).Round(time.Second))
		GinkgoWriter.Print(kubectl("-n", ns, "get", "events", "--field-selector", "involvedObject.kind=ReplicaSet"))
		inits := kubectl("-n", ns, "get", "pods", "-l", "app=early", "-o", `jsonpath={.items[0].spec.initContainers[*].name}`)
		Expect(strings.Fields(inits)).To(Equal([]string{"knit-init", "knit-proxy"}))
	})

	It("names meshed namespaces whose Pod Security level refuses injected pods, and refuses their pods with the fix", Label("injection", "podsecurity"), func() {
		const ns = "knit-e2e-baseline"
		applyManifest(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %s, labels: {knit.dev/inject: enabled, pod-security.kubernetes.io/enforce: baseline}}
`, ns))
		DeferCleanup(func() { _, _ = tryKubectl("delete", "namespace", ns, "--wait=false") })
		Eventually(func(g Gomega) {
			g.Expect(meshCondition("PodSecurityCompatible", "status")).To(Equal("False"))
			g.Expect(meshCondition("PodSecurityCompatible", "message")).To(ContainSubstring(ns + " (baseline)"))
		}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		GinkgoWriter.Print(kubectl("describe", "mesh", "default"))

		out, err := tryKubectl("-n", ns, "run", "web", "--image="+imageRef("e2e-probe"), "--image-pull-policy=Never", "--restart=Never")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`enforces Pod Security level "baseline"`), out)
		Expect(out).To(ContainSubstring("pod-security.kubernetes.io/enforce=privileged"), out)
	})

	It("leaves a person's own knit-trust-bundle ConfigMap alone and names it in describe mesh, while the mesh stays Ready", Label("collision"), func() {
		const ns = "knit-e2e-own-bundle"
		applyManifest(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: knit-trust-bundle, namespace: %[1]s}
data: {ca.crt: "a person's own"}
`, ns))
		DeferCleanup(func() { _, _ = tryKubectl("delete", "namespace", ns, "--wait=false") })
		kubectl("label", "namespace", ns, "knit.dev/inject=enabled")

		var describe string
		Eventually(func(g Gomega) {
			describe = kubectl("describe", "mesh", "default")
			g.Expect(describe).To(ContainSubstring("NameTaken"))
			g.Expect(describe).To(ContainSubstring("ConfigMap " + ns + "/knit-trust-bundle exists and was not made by knit"))
		}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		GinkgoWriter.Print(describe)
		Expect(meshCondition("Ready", "status")).To(Equal("True"), "one namespace's collision does not make the mesh not Ready")
		Expect(kubectl("-n", ns, "get", "configmap", "knit-trust-bundle", "-o", `jsonpath={.data.ca\.crt}`)).
			To(Equal("a person's own"), "knit never touches a person's object")
	})

	It("never meshes cert-manager's or the control plane's namespace: with namespaceSelector {} and failurePolicy Fail both restart and the mesh returns to Ready", Label("exclusions"), func() {
		kubectl("patch", "mesh", "default", "--type", "merge", "-p", `{"spec":{"injection":{"namespaceSelector":{},"failurePolicy":"Fail"}}}`)
		DeferCleanup(func() {
			_, _ = tryKubectl("patch", "mesh", "default", "--type", "json", "-p", `[{"op":"remove","path":"/spec/injection/namespaceSelector"}]`)
		})
		Eventually(func(g Gomega) {
			g.Expect(strings.Fields(meshField(`{range .status.excludedNamespaces[*]}{@}{" "}{end}`))).To(
				ContainElements("kube-system", "knit-system", "knit-operator", "cert-manager"))
			// The active revision's configuration (the upgrade spec, when it ran, moved it to v0.2.0).
			active := strings.TrimPrefix(meshField("{.status.activeRevision}"), "default-")
			hooks, _ := tryKubectl("get", "mutatingwebhookconfiguration", "knit-injector-"+active, "-o", `jsonpath={.webhooks[*].name}`)
			g.Expect(hooks).To(ContainSubstring("selector.inject.knit.dev"))
		}).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		// Restart both: every pod of theirs is created anew while every other namespace is meshed.
		before := map[string]string{}
		for _, ns := range []string{"cert-manager", "knit-system"} {
			for name := range readyPods(ns) {
				before[name] = ns
			}
			kubectl("-n", ns, "delete", "pods", "--all", "--wait=false")
		}
		start := time.Now()
		Eventually(func(g Gomega) {
			for _, ns := range []string{"cert-manager", "knit-system"} {
				pods := readyPods(ns)
				g.Expect(pods).NotTo(BeEmpty(), "pods in %s", ns)
				for name, ready := range pods {
					g.Expect(before).NotTo(HaveKey(name), "%s/%s is an old pod", ns, name)
					g.Expect(ready).To(Equal("True"), "%s/%s Ready", ns, name)
				}
			}
			out, err := tryKubectl("get", "mesh")
			g.Expect(err).NotTo(HaveOccurred(), out)
			g.Expect(tableColumn(out, "default", "READY")).To(Equal("True"), out)
		}).WithTimeout(4*time.Minute).WithPolling(2*time.Second).Should(Succeed(), "cert-manager and the control plane come back and the mesh is Ready")
		GinkgoWriter.Printf("cert-manager and the control plane back, Mesh Ready, %s after the restart\n", time.Since(start).Round(time.Second))
		containers := kubectl("-n", "cert-manager", "get", "pods", "-o", `jsonpath={range .items[*]}{.metadata.name}{": "}{.spec.initContainers[*].name}{" "}{.spec.containers[*].name}{"\n"}{end}`)
		Expect(containers).NotTo(ContainSubstring("knit-proxy"), "cert-manager's pods are never injected")
		GinkgoWriter.Print(kubectl("describe", "mesh", "default"))
	})

	discoverySpecs()
	gatewaySpecs()
	gatewayMTLSSpecs()   // gateway_mtls_test.go
	observabilitySpecs() // observability_test.go

	It("deletes the Mesh and nothing a person made: webhooks first, pods then start uninjected, no knit object remains", Label("deletion"), func() {
		const ns = "knit-e2e-after-mesh"
		applyManifest(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %s, labels: {knit.dev/inject: enabled}}
`, ns))
		DeferCleanup(func() { _, _ = tryKubectl("delete", "namespace", ns, "--wait=false") })
		kubectl("delete", "mesh", "default", "--timeout=3m")

		ours := "app.kubernetes.io/part-of=knit"
		Eventually(func(g Gomega) {
			for _, kind := range []string{"mutatingwebhookconfigurations", "clusterroles", "clusterrolebindings", "meshrevisions",
				"namespaces", "deployments", "services", "serviceaccounts", "configmaps", "rolebindings",
				"certificates.cert-manager.io", "issuers.cert-manager.io"} {
				out, err := tryKubectl("get", kind, "-A", "-l", ours, "-o", "name")
				g.Expect(err).NotTo(HaveOccurred(), out)
				g.Expect(strings.TrimSpace(out)).To(BeEmpty(), "knit's %s left after the Mesh was deleted", kind)
			}
		}).WithTimeout(3 * time.Minute).WithPolling(3 * time.Second).Should(Succeed())

		applyManifest(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: %s}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, ns, imageRef("e2e-probe")))
		Eventually(func() string {
			phase, _ := tryKubectl("-n", ns, "get", "pod", "plain", "-o", "jsonpath={.status.phase}")
			return phase
		}).WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Or(Equal("Running"), Equal("Succeeded")))
		Expect(kubectl("-n", ns, "get", "pod", "plain", "-o", `jsonpath={.spec.initContainers[*].name} {.spec.containers[*].name}`)).
			To(Equal(" main"), "a pod in a formerly meshed namespace runs uninjected")
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

// probeDeployment is a Deployment of the e2e probe image serving HTTP on :8080 with a readiness
// probe, restricted as Pod Security's restricted level asks, labelled app=<name>.
func probeDeployment(ns, name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: %[3]d
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata: {labels: {app: %[2]s}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: app
        image: %[4]s
        imagePullPolicy: Never
        args: [serve, ":8080"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 2}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, ns, name, replicas, imageRef("e2e-probe"))
}
