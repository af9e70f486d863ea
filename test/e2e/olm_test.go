//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// olmEnv reads NAME=VALUE lines that hack/olm.sh and hack/catalog.sh write under bin/olm/.
func olmEnv(file, key string) string {
	GinkgoHelper()
	out := script(fmt.Sprintf(`source bin/olm/%s; echo "${%s}"`, file, key))
	v := strings.TrimSpace(out)
	Expect(v).NotTo(BeEmpty(), "%s in bin/olm/%s", key, file)
	return v
}

func csvPhase(ns, name string) string {
	out, _ := tryKubectl("-n", ns, "get", "csv", name, "-o", "jsonpath={.status.phase}")
	return strings.TrimSpace(out)
}

// approvePlanFor approves the InstallPlan of the Subscription that installs csv.
func approvePlanFor(ns, sub, csv string) {
	GinkgoHelper()
	var plan string
	Eventually(func(g Gomega) {
		plan = strings.TrimSpace(kubectl("-n", ns, "get", "subscription", sub, "-o", "jsonpath={.status.installPlanRef.name}"))
		g.Expect(plan).NotTo(BeEmpty())
		names := kubectl("-n", ns, "get", "installplan", plan, "-o", "jsonpath={.spec.clusterServiceVersionNames}")
		g.Expect(names).To(ContainSubstring(csv))
	}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Succeed(), "an InstallPlan for %s", csv)
	kubectl("-n", ns, "patch", "installplan", plan, "--type", "merge", "-p", `{"spec":{"approved":true}}`)
}

// operatorRunning waits until one operator pod of the namespace, not being deleted, logged that
// it started as release version and holds the operator's leader-election Lease, and returns it.
func operatorRunning(ns, version string) (pod string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		out, err := tryKubectl("-n", ns, "get", "pods", "-l", "control-plane=controller-manager", "--field-selector", "status.phase=Running",
			"-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\n"}{end}`)
		g.Expect(err).NotTo(HaveOccurred())
		pod = ""
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) == 1 {
				logs, _ := tryKubectl("-n", ns, "logs", f[0])
				if strings.Contains(logs, `"msg":"starting manager","version":"`+version+`"`) {
					pod = f[0]
				}
			}
		}
		g.Expect(pod).NotTo(BeEmpty(), "an operator pod that logged version %s:\n%s", version, out)
		holder, _ := tryKubectl("-n", ns, "get", "lease", "manager.knit.dev", "-o", "jsonpath={.spec.holderIdentity}")
		g.Expect(holder).To(HavePrefix(pod+"_"), "the operator %s leads", version)
	}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	return pod
}

// meshObjects maps each object the operator made for the mesh, and each pod of the meshed app
// namespace, to its UID and generation: equal maps mean nothing was recreated or changed spec.
func meshObjects(appNS string) map[string]string {
	GinkgoHelper()
	const each = `{range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}={.metadata.uid}:{.metadata.generation}{"\n"}{end}`
	out := kubectl("-n", "knit-system", "get",
		"deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,roles,rolebindings,issuers.cert-manager.io,certificates.cert-manager.io",
		"-o", "jsonpath="+each)
	out += kubectl("get", "meshrevisions,mutatingwebhookconfigurations", "-o", "jsonpath="+each)
	out += kubectl("-n", appNS, "get", "pods", "-o", "jsonpath="+each)
	objs := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			objs[k] = v
		}
	}
	return objs
}

// readyWatch polls the Mesh's Ready condition every second until stopped, and keeps each
// observation that was not True.
type readyWatch struct {
	mu       sync.Mutex
	notReady []string
	polls    int
	done     chan struct{}
	stopped  chan struct{}
}

func watchMeshReady() *readyWatch {
	w := &readyWatch{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(w.stopped)
		for {
			s := meshCondition("Ready", "status")
			w.mu.Lock()
			w.polls++
			if s != "True" {
				w.notReady = append(w.notReady, fmt.Sprintf("%s Ready=%q", time.Now().UTC().Format(time.TimeOnly), s))
			}
			w.mu.Unlock()
			select {
			case <-w.done:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return w
}

func (w *readyWatch) stop() (polls int, notReady []string) {
	close(w.done)
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.polls, w.notReady
}

// meshStatus is what an operator upgrade or reinstall must leave as it was.
const meshStatus = `{.status.version} {.status.activeRevision} {.status.trust.rootFingerprint} {.status.conditions[?(@.type=="Ready")].lastTransitionTime}`

var _ = Describe("knit installed, upgraded and removed through OLM", Ordered, Label("olm"), func() {
	const (
		ns    = "knit-operator"
		appNS = "knit-e2e-olm"
	)
	var (
		releases []string
		load     *logFollower
	)

	BeforeAll(func() {
		start := time.Now()
		run(10*time.Minute, "hack/cluster-up.sh")
		run(30*time.Minute, "hack/images.sh")
		run(60*time.Minute, "hack/olm.sh") // OLM, then knit's catalog (two releases) and cert-manager's package
		releases = strings.Fields(olmEnv("catalog.env", "KNIT_RELEASES"))
		Expect(releases).To(HaveLen(2))
		GinkgoWriter.Printf("cluster, images, OLM and the catalog took %s\n", time.Since(start).Round(time.Second))
	})

	AfterEach(func() {
		if CurrentSpecReport().Failed() {
			dumpState()
			out, _ := tryKubectl("get", "csv,subscriptions,installplans,catalogsources", "-A")
			GinkgoWriter.Print("\n$ kubectl get csv,subscriptions,installplans,catalogsources -A\n", out)
			for _, d := range []string{"olm-operator", "catalog-operator"} {
				out, _ = tryKubectl("-n", "olm", "logs", "deploy/"+d, "--tail=40")
				GinkgoWriter.Printf("\n--- %s (last 40 lines)\n%s", d, out)
			}
		}
	})

	AfterAll(func() {
		if load != nil {
			load.stop()
		}
		if os.Getenv("KNIT_E2E_KEEP_CLUSTER") == "" {
			_, _ = tryRun(3*time.Minute, "hack/cluster-down.sh")
		}
	})

	// reportLoad fails the spec on any failed request of the meshed client since it started.
	reportLoad := func(when string) {
		GinkgoHelper()
		ok, fail, failures := load.counts()
		GinkgoWriter.Printf("client requests %s: %d ok, %d failed\n", when, ok, fail)
		Expect(fail).To(BeZero(), "failed requests %s:\n%s", when, strings.Join(failures, "\n"))
	}

	It("installs knit and its cert-manager dependency from a CatalogSource and a Subscription", func() {
		start := time.Now()
		applyManifest(fmt.Sprintf(`apiVersion: operators.coreos.com/v1alpha1
kind: CatalogSource
metadata: {name: knit-catalog, namespace: olm}
spec:
  sourceType: grpc
  image: %s
  grpcPodConfig: {securityContextConfig: restricted}
---
apiVersion: v1
kind: Namespace
metadata: {name: %[2]s}
---
apiVersion: operators.coreos.com/v1
kind: OperatorGroup
metadata: {name: knit, namespace: %[2]s}
---
apiVersion: operators.coreos.com/v1alpha1
kind: Subscription
metadata: {name: knit, namespace: %[2]s}
spec: {name: knit, channel: stable-v0, source: knit-catalog, sourceNamespace: olm, startingCSV: %[3]s, installPlanApproval: Manual}
`, olmEnv("catalog.env", "CATALOG_IMAGE"), ns, releases[0]))
		Eventually(func() string {
			out, _ := tryKubectl("-n", "olm", "get", "catalogsource", "knit-catalog", "-o", "jsonpath={.status.connectionState.lastObservedState}")
			return strings.TrimSpace(out)
		}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Equal("READY"), "the catalog pod serves")
		approvePlanFor(ns, "knit", releases[0])
		Eventually(func(g Gomega) {
			g.Expect(csvPhase(ns, releases[0])).To(Equal("Succeeded"))
			out := kubectl("-n", ns, "get", "csv", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}{" "}{end}`)
			g.Expect(out).To(MatchRegexp(`cert-manager\.v[0-9.]+=Succeeded`), "cert-manager installed as knit's dependency")
		}).WithTimeout(5 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		operatorRunning(ns, "v"+strings.TrimPrefix(releases[0], "knit.v"))
		GinkgoWriter.Printf("knit %s and cert-manager Succeeded %s after the CatalogSource\n", releases[0], time.Since(start).Round(time.Second))
	})

	It("makes the sample Mesh Ready and injects meshed pods that serve 100 req/s", func() {
		start := time.Now()
		run(2*time.Minute, "hack/cluster/install.sh", "sample")
		Eventually(func() string { return meshCondition("Ready", "status") }).
			WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Equal("True"))
		GinkgoWriter.Printf("Mesh Ready %s after the apply\n", time.Since(start).Round(time.Second))
		// The client sends 100 req/s through its proxy to the server's Service; it has no
		// readiness endpoint of its own.
		client := strings.Replace(probeDeployment(appNS, "client", 1),
			`args: [serve, ":8080"]`, fmt.Sprintf(`args: [load, "http://server.%s.svc.cluster.local/load", "100"]`, appNS), 1)
		client = regexp.MustCompile(`(?m)^\s*readinessProbe:.*\n`).ReplaceAllString(client, "")
		applyManifest(meshedNamespace(appNS) + httpService(appNS, "server") + probeDeployment(appNS, "server", 2))
		// The client starts once the server is Ready: until then a Service without a ready
		// endpoint rightly answers 503 (seen: 183 of them in the first second when both started
		// together).
		kubectl("-n", appNS, "rollout", "status", "deployment/server", "--timeout=180s")
		applyManifest(client)
		kubectl("-n", appNS, "rollout", "status", "deployment/client", "--timeout=180s")
		inits := kubectl("-n", appNS, "get", "pods", "-o", `jsonpath={range .items[*]}{.spec.initContainers[*].name}{"\n"}{end}`)
		lines := strings.Split(strings.TrimSpace(inits), "\n")
		Expect(lines).To(HaveLen(3))
		for _, l := range lines {
			Expect(strings.Fields(l)).To(Equal([]string{"knit-init", "knit-proxy"}), "every app pod is injected")
		}
		load = followLogs(appNS, "client")
		Eventually(func() int { ok, _, _ := load.counts(); return ok }).WithTimeout(60*time.Second).WithPolling(time.Second).
			Should(BeNumerically(">", 200), "the client sends 100 req/s")
		reportLoad("before the operator upgrade")
	})

	It("upgrades the operator through the channel while the Mesh stays Ready, its traffic flows and nothing is recreated", func() {
		before := meshField(meshStatus)
		objects := meshObjects(appNS)
		oldPod := operatorRunning(ns, "v"+strings.TrimPrefix(releases[0], "knit.v"))
		ready := watchMeshReady()
		start := time.Now()
		approvePlanFor(ns, "knit", releases[1])
		Eventually(func(g Gomega) {
			g.Expect(csvPhase(ns, releases[1])).To(Equal("Succeeded"))
			_, err := tryKubectl("-n", ns, "get", "csv", releases[0])
			g.Expect(err).To(HaveOccurred(), "OLM removes the replaced CSV")
		}).WithTimeout(5 * time.Minute).WithPolling(time.Second).Should(Succeed())
		newPod := operatorRunning(ns, "v"+strings.TrimPrefix(releases[1], "knit.v"))
		Expect(newPod).NotTo(Equal(oldPod))
		GinkgoWriter.Printf("operator %s → %s took %s (pod %s → %s)\n", releases[0], releases[1], time.Since(start).Round(time.Second), oldPod, newPod)
		polls, notReady := ready.stop()
		Expect(notReady).To(BeEmpty(), "the Mesh stays Ready during the operator upgrade (%d polls)", polls)
		// The new operator takes over and leaves the mesh as it was; as leader it heals what it
		// manages (the injector's webhook configuration, deleted here). The status is compared
		// first: a missing webhook rightly turns Ready False for a moment.
		Expect(meshField(meshStatus)).To(Equal(before), "the Mesh's status is preserved")
		selfHeals(fmt.Sprintf("knit-injector-%s", strings.TrimPrefix(meshField("{.status.activeRevision}"), "default-")))
		readyAgain(before)
		Expect(sorted(meshObjects(appNS), webhooks)).To(Equal(sorted(objects, webhooks)), "nothing of the mesh or its data plane is recreated or changed")
		reportLoad("through the operator upgrade")
	})

	It("uninstalls the operator through OLM without taking the mesh down, and a reinstall picks it up", func() {
		before := meshField(meshStatus)
		objects := meshObjects(appNS)
		ready := watchMeshReady()
		kubectl("-n", ns, "delete", "subscription", "knit")
		kubectl("-n", ns, "delete", "csv", releases[1])
		Eventually(func() string {
			out, _ := tryKubectl("-n", ns, "get", "pods", "-l", "control-plane=controller-manager", "-o", "name")
			return strings.TrimSpace(out)
		}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(BeEmpty(), "OLM removes the operator")
		Expect(meshField("{.metadata.name}")).To(Equal("default"), "the Mesh stays")
		Expect(sorted(meshObjects(appNS), "")).To(Equal(sorted(objects, "")), "the control plane and the data plane keep running untouched")
		reportLoad("with the operator uninstalled")

		start := time.Now()
		applyManifest(fmt.Sprintf(`apiVersion: operators.coreos.com/v1alpha1
kind: Subscription
metadata: {name: knit, namespace: %s}
spec: {name: knit, channel: stable-v0, source: knit-catalog, sourceNamespace: olm}
`, ns))
		Eventually(func() string { return csvPhase(ns, releases[1]) }).
			WithTimeout(5*time.Minute).WithPolling(2*time.Second).Should(Equal("Succeeded"), "the channel's head is installed again")
		pod := operatorRunning(ns, "v"+strings.TrimPrefix(releases[1], "knit.v"))
		GinkgoWriter.Printf("reinstall of %s took %s (pod %s)\n", releases[1], time.Since(start).Round(time.Second), pod)
		polls, notReady := ready.stop()
		Expect(notReady).To(BeEmpty(), "the Mesh stays Ready while the operator is away and back (%d polls)", polls)
		Expect(meshField("{.status.observedGeneration}")).To(Equal(meshField("{.metadata.generation}")))
		Expect(meshField(meshStatus)).To(Equal(before), "the Mesh's status is preserved")
		selfHeals(fmt.Sprintf("knit-injector-%s", strings.TrimPrefix(meshField("{.status.activeRevision}"), "default-")))
		readyAgain(before)
		Expect(sorted(meshObjects(appNS), webhooks)).To(Equal(sorted(objects, webhooks)), "the reinstalled operator adopts the mesh as it is")
		reportLoad("through the uninstall and the reinstall")
	})
})

// selfHeals deletes the injector's webhook configuration and waits until the operator has made
// it again: proof that a running operator manages the mesh.
func selfHeals(webhook string) {
	GinkgoHelper()
	oldUID := kubectl("get", "mutatingwebhookconfiguration", webhook, "-o", "jsonpath={.metadata.uid}")
	kubectl("delete", "mutatingwebhookconfiguration", webhook)
	Eventually(func() string {
		uid, _ := tryKubectl("get", "mutatingwebhookconfiguration", webhook, "-o", "jsonpath={.metadata.uid}")
		return uid
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(And(Not(BeEmpty()), Not(Equal(oldUID))), "the operator recreates %s", webhook)
}

// readyAgain waits for the Mesh to be Ready after selfHeals, and checks that it is on the
// version, revision and root it was on (before is a meshStatus).
func readyAgain(before string) {
	GinkgoHelper()
	Eventually(func() string { return meshField(`{.status.conditions[?(@.type=="Ready")].status}`) }).
		WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("True"), "the Mesh is Ready again once the webhook is back")
	Expect(strings.Fields(meshField(meshStatus))[:3]).To(Equal(strings.Fields(before)[:3]))
}

// webhooks is the key prefix of the webhook configurations in meshObjects: selfHeals recreates
// one on purpose.
const webhooks = "MutatingWebhookConfiguration/"

// sorted returns the keys and values of objs but those with prefix skip (none when ""), sorted,
// so a difference prints readably.
func sorted(objs map[string]string, skip string) []string {
	var out []string
	for k, v := range objs {
		if skip == "" || !strings.HasPrefix(k, skip) {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}
