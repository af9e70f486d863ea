//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
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

var _ = Describe("knit installed, upgraded and removed through OLM", Ordered, Label("olm"), func() {
	const ns = "knit-operator"
	var releases []string

	BeforeAll(func() {
		run(10*time.Minute, "hack/cluster-up.sh")
		run(30*time.Minute, "hack/images.sh")
		run(60*time.Minute, "hack/olm.sh") // OLM, then knit's catalog (two releases) and cert-manager's package
		releases = strings.Fields(olmEnv("catalog.env", "KNIT_RELEASES"))
		Expect(releases).To(HaveLen(2))
	})

	AfterEach(func() {
		if CurrentSpecReport().Failed() {
			dumpState()
		}
	})

	AfterAll(func() {
		if os.Getenv("KNIT_E2E_KEEP_CLUSTER") == "" {
			_, _ = tryRun(3*time.Minute, "hack/cluster-down.sh")
		}
	})

	It("installs knit and its cert-manager dependency from a CatalogSource and a Subscription", func() {
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
		start := time.Now()
		approvePlanFor(ns, "knit", releases[0])
		Eventually(func(g Gomega) {
			g.Expect(csvPhase(ns, releases[0])).To(Equal("Succeeded"))
			out := kubectl("-n", ns, "get", "csv", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}{" "}{end}`)
			g.Expect(out).To(MatchRegexp(`cert-manager\.v[0-9.]+=Succeeded`), "cert-manager installed as knit's dependency")
		}).WithTimeout(5 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		GinkgoWriter.Printf("knit %s and cert-manager Succeeded %s after approval\n", releases[0], time.Since(start).Round(time.Second))
	})

	It("makes the sample Mesh Ready and injects meshed pods", func() {
		run(2*time.Minute, "hack/cluster/install.sh", "sample")
		Eventually(func() string { return meshCondition("Ready", "status") }).
			WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Equal("True"))
		applyManifest(`apiVersion: v1
kind: Namespace
metadata: {name: knit-e2e-olm, labels: {knit.dev/inject: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: knit-e2e-olm}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
` + probeDeployment("knit-e2e-olm", "echo", 2))
		kubectl("-n", "knit-e2e-olm", "rollout", "status", "deployment/echo", "--timeout=180s")
		inits := kubectl("-n", "knit-e2e-olm", "get", "pods", "-l", "app=echo", "-o", `jsonpath={range .items[*]}{.spec.initContainers[*].name}{"\n"}{end}`)
		for _, l := range strings.Split(strings.TrimSpace(inits), "\n") {
			Expect(strings.Fields(l)).To(Equal([]string{"knit-init", "knit-proxy"}))
		}
	})

	It("upgrades the operator through the channel while the Mesh stays Ready and keeps its status", func() {
		before := meshField(`{.status.version} {.status.activeRevision} {.status.trust.rootFingerprint} {.status.conditions[?(@.type=="Ready")].lastTransitionTime}`)
		cpUID := kubectl("-n", "knit-system", "get", "deployment", "-l", "app=knit-controlplane", "-o", "jsonpath={.items[*].metadata.uid}")
		echoUIDs := kubectl("-n", "knit-e2e-olm", "get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].metadata.uid}")
		approvePlanFor(ns, "knit", releases[1])
		Eventually(func(g Gomega) {
			g.Expect(meshCondition("Ready", "status")).To(Equal("True"), "the Mesh stays Ready during the upgrade")
			g.Expect(csvPhase(ns, releases[1])).To(Equal("Succeeded"))
		}).WithTimeout(5 * time.Minute).WithPolling(time.Second).Should(Succeed())
		Expect(meshField(`{.status.version} {.status.activeRevision} {.status.trust.rootFingerprint} {.status.conditions[?(@.type=="Ready")].lastTransitionTime}`)).To(Equal(before))
		Expect(kubectl("-n", "knit-system", "get", "deployment", "-l", "app=knit-controlplane", "-o", "jsonpath={.items[*].metadata.uid}")).To(Equal(cpUID))
		Expect(kubectl("-n", "knit-e2e-olm", "get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].metadata.uid}")).To(Equal(echoUIDs))
	})

	It("uninstalls the operator through OLM without taking the mesh down, and a reinstall picks it up", func() {
		cpUID := kubectl("-n", "knit-system", "get", "deployment", "-l", "app=knit-controlplane", "-o", "jsonpath={.items[*].metadata.uid}")
		kubectl("-n", ns, "delete", "subscription", "knit")
		kubectl("-n", ns, "delete", "csv", releases[1])
		Eventually(func() string {
			out, _ := tryKubectl("-n", ns, "get", "deployment", "knit-controller-manager", "-o", "name", "--ignore-not-found")
			return strings.TrimSpace(out)
		}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(BeEmpty(), "OLM removes the operator")
		Expect(meshField("{.metadata.name}")).To(Equal("default"), "the Mesh stays")
		Expect(kubectl("-n", "knit-system", "get", "deployment", "-l", "app=knit-controlplane", "-o", "jsonpath={.items[*].metadata.uid}")).To(Equal(cpUID))
		kubectl("-n", "knit-e2e-olm", "rollout", "status", "deployment/echo", "--timeout=60s")

		applyManifest(fmt.Sprintf(`apiVersion: operators.coreos.com/v1alpha1
kind: Subscription
metadata: {name: knit, namespace: %s}
spec: {name: knit, channel: stable-v0, source: knit-catalog, sourceNamespace: olm}
`, ns))
		Eventually(func(g Gomega) {
			g.Expect(csvPhase(ns, releases[1])).To(Equal("Succeeded"))
			g.Expect(meshCondition("Ready", "status")).To(Equal("True"))
			g.Expect(meshField("{.status.observedGeneration}")).To(Equal(meshField("{.metadata.generation}")))
		}).WithTimeout(5 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		Expect(kubectl("-n", "knit-system", "get", "deployment", "-l", "app=knit-controlplane", "-o", "jsonpath={.items[*].metadata.uid}")).To(Equal(cpUID))
	})
})
