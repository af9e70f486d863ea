//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// demoWorkloads is the README's "Try the mesh" file: what a person applies first after make demo.
const demoWorkloads = "config/samples/workloads/demo.yaml"

// workloadsSpecs: the sample workloads of the README run meshed as the README says — an init
// container calling a Service with sh -c, probes, a Job that completes, a StatefulSet whose
// replicas call each other by their stable names.
func workloadsSpecs() {
	It("runs the README's sample workloads meshed: an init container's sh -c call, probes, a Job, a StatefulSet", Label("workloads"), func() {
		const ns = "knit-demo"
		run(5*time.Minute, "hack/images.sh", "--import", "toolbox")
		manifest, err := os.ReadFile(filepath.Join(cluster.repo, demoWorkloads))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(manifest)).To(ContainSubstring("image: "+imageRef("toolbox")), "the sample names the toolbox image make demo imports")
		DeferCleanup(func() { _, _ = tryKubectl("delete", "namespace", ns, "--wait=false") })

		start := time.Now()
		applyManifest(string(manifest))
		for _, w := range []string{"deployment/web", "deployment/client", "statefulset/db"} {
			kubectl("-n", ns, "rollout", "status", w, "--timeout=180s")
		}
		kubectl("-n", ns, "wait", "--for=condition=complete", "job/hello", "--timeout=120s")
		GinkgoWriter.Printf("sample workloads ready and the Job complete after %s\n", time.Since(start).Round(time.Second))
		GinkgoWriter.Print(kubectl("-n", ns, "get", "pods,jobs", "-o", "wide"))

		// Every pod has the sidecar, ahead of the user's own init container.
		inits := kubectl("-n", ns, "get", "pods", "-o", `jsonpath={range .items[*]}{.metadata.name}{": "}{.spec.initContainers[*].name}{"\n"}{end}`)
		for _, line := range strings.Split(strings.TrimSpace(inits), "\n") {
			Expect(line).To(ContainSubstring("knit-init knit-proxy"), "every pod is meshed:\n%s", inits)
		}
		Expect(inits).To(MatchRegexp(`client-\S+: knit-init knit-proxy wait-for-web`), "the sidecar starts before the user's init container")

		// The init container's sh -c call reached the Service through the mesh.
		client := kubectl("-n", ns, "get", "pods", "-l", "app=client", "-o", "jsonpath={.items[0].metadata.name}")
		Expect(kubectl("-n", ns, "logs", client, "-c", "wait-for-web")).To(ContainSubstring("hello from web-"))
		Eventually(func() string { out, _ := tryKubectl("-n", ns, "logs", client, "-c", "client"); return out }).
			WithTimeout(30 * time.Second).WithPolling(time.Second).Should(ContainSubstring("/from-client"))

		// The Job answered three times, in its first pod (the sample waits for web, so a failed
		// attempt is a failed request), and its pod ended with the sidecar stopped.
		if failed := kubectl("-n", ns, "get", "job/hello", "-o", "jsonpath={.status.failed}"); failed != "" && failed != "0" {
			logs, _ := tryKubectl("-n", ns, "logs", "-l", "batch.kubernetes.io/job-name=hello", "-c", "hello", "--prefix")
			Fail(fmt.Sprintf("job/hello had %s failed pod(s); its pods' logs:\n%s", failed, logs))
		}
		jobLog := kubectl("-n", ns, "logs", "job/hello", "-c", "hello")
		Expect(strings.Count(jobLog, "hello from web-")).To(Equal(3), jobLog)

		// The StatefulSet's replica 1 reaches replica 0 by its stable DNS name.
		Eventually(func() string { out, _ := tryKubectl("-n", ns, "logs", "db-1", "-c", "peer"); return out }).
			WithTimeout(30 * time.Second).WithPolling(time.Second).Should(ContainSubstring("hello from db-0 /from-db-1"))

		// The app's probes, rewritten to ask through the sidecar, keep every container Ready.
		Expect(tableColumn(kubectl("-n", ns, "get", "pods", "db-0"), "db-0", "READY")).To(Equal("3/3"))
	})
}
