//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// logFollower streams the logs of every pod of an app as the pods come and go (`kubectl logs -f`
// per pod), so what a pod printed before it was replaced is kept.
type logFollower struct {
	ns, app string
	mu      sync.Mutex
	logs    map[string]*bytes.Buffer
	cmds    []*exec.Cmd
	done    chan struct{}
	stopped chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func followLogs(ns, app string) *logFollower {
	f := &logFollower{ns: ns, app: app, logs: map[string]*bytes.Buffer{}, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(f.stopped)
		for {
			out, _ := tryKubectl("-n", ns, "get", "pods", "-l", "app="+app, "-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.phase}{"\n"}{end}`)
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				fields := strings.Fields(l)
				if len(fields) != 2 || fields[1] != "Running" {
					continue
				}
				f.mu.Lock()
				if f.logs[fields[0]] == nil && clusterUp() {
					buf := &bytes.Buffer{}
					f.logs[fields[0]] = buf
					cmd := exec.Command(cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "-n", ns, "logs", "-f", fields[0], "-c", "app")
					cmd.Stdout = lockedWriter{&f.mu, buf}
					if cmd.Start() == nil {
						f.cmds = append(f.cmds, cmd)
					}
				}
				f.mu.Unlock()
			}
			select {
			case <-f.done:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return f
}

var (
	loadTotal = regexp.MustCompile(`(?m)^load total ok=(\d+) fail=(\d+)$`)
	loadLine  = regexp.MustCompile(`(?m)^load ok=(\d+) fail=(\d+)$`)
)

// counts sums, over every pod followed, its final totals (or its last progress line if it
// still runs), and returns the failure lines.
func (f *logFollower) counts() (ok, fail int, failures []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.logs {
		o, x, fl := loadCounts(b.String())
		ok, fail, failures = ok+o, fail+x, append(failures, fl...)
	}
	return ok, fail, failures
}

// loadCounts reads the output of one `probe load URL RATE`: its final totals (or its last
// progress line if it still runs) and its failure lines.
func loadCounts(out string) (ok, fail int, failures []string) {
	m := loadTotal.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		m = loadLine.FindAllStringSubmatch(out, -1)
	}
	if len(m) > 0 {
		last := m[len(m)-1]
		ok, _ = strconv.Atoi(last[1])
		fail, _ = strconv.Atoi(last[2])
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "load failure") {
			failures = append(failures, l)
		}
	}
	return ok, fail, failures
}

func (f *logFollower) stop() {
	close(f.done)
	<-f.stopped
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cmds {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}

// proxyVersions asks every running pod's proxy for its version (GET :15020/version, from a pod
// outside the mesh) and maps pod IP to the answer.
func proxyVersions(ns string) map[string]string {
	GinkgoHelper()
	ips := strings.Fields(kubectl("-n", ns, "get", "pods", "--field-selector", "status.phase=Running",
		"-o", `jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{end}{range .items[*]}{.status.podIP}{" "}{end}`))
	var urls []string
	for _, ip := range ips {
		urls = append(urls, fmt.Sprintf("http://%s:15020/version", ip))
	}
	out, ok := podRun("proxy-versions", imageRef("e2e-probe"), append([]string{"getall"}, urls...)...)
	Expect(ok).To(BeTrue(), out)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l) // URL 200 OK version
		if len(f) == 4 {
			got[f[0]] = f[3]
		}
	}
	Expect(got).To(HaveLen(len(ips)), out)
	return got
}

// settled says whether the namespace runs want pods, all Running and Ready, none terminating.
func settled(g Gomega, ns string, want int) {
	out, err := tryKubectl("-n", ns, "get", "pods",
		"-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.metadata.deletionTimestamp}{"\n"}{end}`)
	g.Expect(err).NotTo(HaveOccurred())
	lines := strings.Split(strings.TrimSpace(out), "\n")
	g.Expect(lines).To(HaveLen(want), out)
	for _, l := range lines {
		g.Expect(strings.Fields(l)).To(HaveLen(3), "running, Ready, not terminating: %s", out)
		g.Expect(strings.TrimSpace(l)).To(HaveSuffix(" Running True"), out)
	}
}

// waitForVersion follows an upgrade until status.version is v and Upgrading False, printing each
// new Upgrading message, and `kubectl describe mesh default` once while workloads move.
func waitForVersion(v string, timeout time.Duration) {
	GinkgoHelper()
	described := false
	last := ""
	Eventually(func(g Gomega) {
		// One read, so status, reason and message belong together.
		cond := meshField(`{.status.conditions[?(@.type=="Upgrading")].status}|{.status.conditions[?(@.type=="Upgrading")].reason}|{.status.conditions[?(@.type=="Upgrading")].message}`)
		if cond != last {
			last = cond
			f := strings.SplitN(cond, "|", 3)
			if len(f) == 3 {
				GinkgoWriter.Printf("%s Upgrading=%s (%s): %s\n", time.Now().UTC().Format(time.TimeOnly), f[0], f[1], f[2])
			}
		}
		if !described && meshCondition("Upgrading", "reason") == "MovingWorkloads" {
			described = true
			GinkgoWriter.Print("kubectl describe mesh default, during the upgrade:\n", kubectl("describe", "mesh", "default"))
		}
		g.Expect(meshField("{.status.version}")).To(Equal(v))
		g.Expect(meshCondition("Upgrading", "status")).To(Equal("False"))
	}).WithTimeout(timeout).WithPolling(time.Second).Should(Succeed(), "status.version %s and Upgrading False", v)
}

func upgradeWorkloadByWorkload() {
	const ns = "knit-e2e-upgrade"
	// The client sends 100 req/s through its proxy to the server's Service; it has no readiness
	// endpoint of its own.
	client := strings.Replace(probeDeployment(ns, "client", 1),
		`args: [serve, ":8080"]`, fmt.Sprintf(`args: [load, "http://server.%s.svc.cluster.local/load", "100"]`, ns), 1)
	client = regexp.MustCompile(`(?m)^\s*readinessProbe:.*\n`).ReplaceAllString(client, "")
	manifest := meshedNamespace(ns) + httpService(ns, "server") + probeDeployment(ns, "server", 2)
	for _, w := range []string{"w1", "w2", "w3", "w4"} {
		manifest += "---\n" + probeDeployment(ns, w, 1)
	}
	// Test only: a revision no pod uses goes 5 s after its last pod instead of the default 30 s
	// (twice here). The operator restarts for it while the workloads start, and once more after.
	const operator = "deployment/knit-controller-manager"
	kubectl("-n", "knit-operator", "set", "env", operator, "KNIT_TEST_REVISION_GRACE_PERIOD=5s")
	DeferCleanup(func() {
		_, _ = tryKubectl("-n", "knit-operator", "set", "env", operator, "KNIT_TEST_REVISION_GRACE_PERIOD-")
		out, err := tryKubectl("-n", "knit-operator", "rollout", "status", operator, "--timeout=120s")
		GinkgoWriter.Printf("operator after the upgrade spec (%v): %s\n", err, out)
	})
	applyManifest(manifest)
	DeferCleanup(func() { _, _ = tryKubectl("delete", "namespace", ns, "--wait=false") })
	// The client starts once the server is Ready: until then a Service without a ready endpoint
	// rightly answers 503 (seen: 31 of them in the first half second when both started together).
	kubectl("-n", ns, "rollout", "status", "deployment/server", "--timeout=180s")
	applyManifest(client)
	for _, d := range []string{"client", "w1", "w2", "w3", "w4"} {
		kubectl("-n", ns, "rollout", "status", "deployment/"+d, "--timeout=180s")
	}
	Expect(meshField("{.status.activeRevision}")).To(Equal("default-v0-1-0"))
	Expect(meshField("{.status.version}")).To(Equal("v0.1.0"))
	for ip, v := range proxyVersions(ns) {
		Expect(v).To(Equal("v0.1.0"), "the proxy at %s", ip)
	}
	kubectl("-n", "knit-operator", "rollout", "status", operator, "--timeout=120s")
	kubectl("patch", "mesh", "default", "--type", "merge", "-p", `{"spec":{"upgrade":{"strategy":"RevisionBased","batchSize":2,"paused":false}}}`)

	load := followLogs(ns, "client")
	defer load.stop()
	Eventually(func() int { ok, _, _ := load.counts(); return ok }).WithTimeout(60*time.Second).WithPolling(time.Second).
		Should(BeNumerically(">", 200), "the client sends 100 req/s")
	report := func(when string) {
		ok, fail, failures := load.counts()
		GinkgoWriter.Printf("client requests %s: %d ok, %d failed\n", when, ok, fail)
		Expect(fail).To(BeZero(), "failed requests %s:\n%s", when, strings.Join(failures, "\n"))
	}

	By("upgrading v0.1.0 → v0.2.0 RevisionBased, two workloads at a time")
	start := time.Now()
	kubectl("patch", "mesh", "default", "--type", "merge", "-p", `{"spec":{"version":"v0.2.0"}}`)
	Eventually(func() string { return meshField("{.status.activeRevision}") }).WithTimeout(3*time.Minute).WithPolling(time.Second).
		Should(Equal("default-v0-2-0"), "injection moves to default-v0-2-0 once it serves")
	// The MeshRevision reconciler hands the namespace hooks over once activeRevision names the new
	// revision: moments later, not in the same write.
	Eventually(func() string {
		out, _ := tryKubectl("get", "mutatingwebhookconfiguration", "knit-injector-v0-2-0", "-o", `jsonpath={.webhooks[*].name}`)
		return out
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(ContainSubstring("namespace.inject.knit.dev"))
	waitForVersion("v0.2.0", 8*time.Minute)
	GinkgoWriter.Printf("v0.1.0 → v0.2.0 took %s\n", time.Since(start).Round(time.Second))
	table := kubectl("get", "mesh")
	GinkgoWriter.Print(table)
	Expect(tableColumn(table, "default", "VERSION")).To(Equal("v0.2.0"), table)
	Expect(tableColumn(table, "default", "UPGRADING")).To(Equal("False"), table)
	_, err := tryKubectl("get", "meshrevision", "default-v0-1-0")
	Expect(err).To(HaveOccurred(), "the old MeshRevision is removed")
	_, err = tryKubectl("get", "mutatingwebhookconfiguration", "knit-injector-v0-1-0")
	Expect(err).To(HaveOccurred(), "the old webhook configuration is removed")
	Eventually(func() error {
		_, err := tryKubectl("-n", "knit-system", "get", "deployment", "knit-controlplane-v0-1-0")
		return err
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(HaveOccurred(), "the old control plane is removed")
	Eventually(func(g Gomega) { settled(g, ns, 7) }).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	for ip, v := range proxyVersions(ns) {
		Expect(v).To(Equal("v0.2.0"), "the proxy at %s reports its own version", ip)
	}
	batches := kubectl("get", "events", "-A", "--field-selector", "reason=UpgradeBatch", "-o", `jsonpath={range .items[*]}{.note}{.message}{"\n"}{end}`)
	GinkgoWriter.Print("UpgradeBatch events:\n", batches)
	Expect(strings.Count(batches, "onto MeshRevision default-v0-2-0")).To(BeNumerically(">=", 3), "6 workloads, 2 at a time")
	removed := kubectl("get", "events", "-A", "--field-selector", "reason=RevisionRemoved", "-o", `jsonpath={range .items[*]}{.note}{.message}{"\n"}{end}`)
	Expect(removed).To(ContainSubstring("MeshRevision default-v0-1-0 (v0.1.0) removed: no pod has used it for 5s"), "the operator's test-only grace period is in force")
	report("after the upgrade to v0.2.0")

	By("rolling back to v0.1.0 the same way")
	start = time.Now()
	kubectl("patch", "mesh", "default", "--type", "merge", "-p", `{"spec":{"version":"v0.1.0"}}`)
	waitForVersion("v0.1.0", 8*time.Minute)
	GinkgoWriter.Printf("rollback to v0.1.0 took %s\n", time.Since(start).Round(time.Second))
	_, err = tryKubectl("get", "meshrevision", "default-v0-2-0")
	Expect(err).To(HaveOccurred(), "the v0.2.0 MeshRevision is removed after the rollback")
	Eventually(func(g Gomega) { settled(g, ns, 7) }).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	for ip, v := range proxyVersions(ns) {
		Expect(v).To(Equal("v0.1.0"), "the proxy at %s after the rollback", ip)
	}
	report("after the rollback to v0.1.0")

	By("upgrading InPlace to v0.2.0: the control plane rolls, proxies move when their pods restart")
	kubectl("patch", "mesh", "default", "--type", "merge", "-p", `{"spec":{"version":"v0.2.0","upgrade":{"strategy":"InPlace"}}}`)
	waitForVersion("v0.2.0", 5*time.Minute)
	Expect(meshField("{.status.activeRevision}")).To(Equal("default-v0-1-0"), "InPlace keeps the revision")
	Expect(kubectl("-n", "knit-system", "get", "deployment", "knit-controlplane-v0-1-0", "-o", "jsonpath={.spec.template.spec.containers[0].image}")).
		To(HaveSuffix(":v0.2.0"))
	Eventually(func() string { return meshCondition("DataPlaneSkew", "message") }).WithTimeout(time.Minute).WithPolling(time.Second).
		Should(ContainSubstring("7 of 7 proxies run a release older than the control plane's v0.2.0"))
	kubectl("-n", ns, "rollout", "restart", "deployment/w1")
	kubectl("-n", ns, "rollout", "status", "deployment/w1", "--timeout=120s")
	Eventually(func() string { return meshCondition("DataPlaneSkew", "message") }).WithTimeout(2 * time.Minute).WithPolling(time.Second).
		Should(ContainSubstring("6 of 7 proxies run a release older than the control plane's v0.2.0 (6 on v0.1.0)"))
	w1 := kubectl("-n", ns, "get", "pods", "-l", "app=w1", "--field-selector", "status.phase=Running", "-o", "jsonpath={.items[0].status.podIP}")
	Expect(proxyVersions(ns)[fmt.Sprintf("http://%s:15020/version", w1)]).To(Equal("v0.2.0"), "a restarted pod runs the new proxy")
	GinkgoWriter.Print(kubectl("describe", "mesh", "default"))
	report("after the InPlace upgrade")
	kubectl("patch", "mesh", "default", "--type", "merge", "-p", `{"spec":{"upgrade":{"strategy":"RevisionBased"}}}`)
}
