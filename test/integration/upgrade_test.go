package integration

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/controllers"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// deploymentStandin stands in for the Deployment controller, which envtest does not run: when a
// Deployment's generation moves it makes a ReplicaSet for the new template and creates its pods
// through the API server (so the real injection webhook injects them, with whichever revision
// selects the namespace now), deletes the previous ReplicaSets' pods (unscheduled pods go at
// once), and reports every replica available. hold stops it, as a slow rollout would.
type deploymentStandin struct {
	namespaces []string
	held       atomic.Bool
	done       chan struct{}
}

func startDeploymentStandin(namespaces ...string) *deploymentStandin {
	s := &deploymentStandin{namespaces: namespaces, done: make(chan struct{})}
	go func() {
		seen := map[string]time.Time{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
			if s.held.Load() {
				continue
			}
			for _, ns := range s.namespaces {
				stopTerminatedPods(context.Background(), ns, seen, time.Second)
				var list appsv1.DeploymentList
				if err := k8sClient.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
					continue
				}
				for i := range list.Items {
					d := &list.Items[i]
					if d.Status.ObservedGeneration == d.Generation {
						continue
					}
					if err := rollDeployment(context.Background(), d); err != nil {
						fmt.Fprintf(GinkgoWriter, "deployment stand-in: %s/%s: %v\n", d.Namespace, d.Name, err)
					}
				}
			}
		}
	}()
	return s
}

// terminatingFinalizer keeps a deleted pod terminating until the stand-in's next tick.
const terminatingFinalizer = "test.knit.dev/terminating"

func (s *deploymentStandin) hold()    { s.held.Store(true) }
func (s *deploymentStandin) release() { s.held.Store(false) }
func (s *deploymentStandin) stop()    { close(s.done) }

func rollDeployment(ctx context.Context, d *appsv1.Deployment) error {
	replicas := ptr.Deref(d.Spec.Replicas, 1)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", d.Name, d.Generation), Namespace: d.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: d.Spec.Selector, Template: d.Spec.Template},
	}
	if err := controllerutil.SetControllerReference(d, rs, scheme); err != nil {
		return err
	}
	if err := k8sClient.Create(ctx, rs); client.IgnoreAlreadyExists(err) != nil {
		return err
	}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(rs), rs); err != nil {
		return err
	}
	for i := range replicas {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", rs.Name, i), Namespace: d.Namespace,
				Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
			Spec: *d.Spec.Template.Spec.DeepCopy(),
		}
		pod.Finalizers = []string{terminatingFinalizer}
		if err := controllerutil.SetControllerReference(rs, pod, scheme); err != nil {
			return err
		}
		if err := k8sClient.Create(ctx, pod); client.IgnoreAlreadyExists(err) != nil {
			return err
		}
	}
	var pods corev1.PodList
	if err := k8sClient.List(ctx, &pods, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		return err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if o := metav1.GetControllerOf(p); o != nil && o.Name != rs.Name {
			if p.DeletionTimestamp != nil {
				continue // terminating already
			}
			if err := k8sClient.Delete(ctx, p); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	return updateDeploymentStatus(ctx, client.ObjectKeyFromObject(d))
}

// stopTerminatedPods lets the pods that have been terminating for longer than after go, as a
// kubelet does once their containers have stopped: a replaced pod outlives its Deployment's
// finished rollout a little. seen remembers when each was first seen terminating.
func stopTerminatedPods(ctx context.Context, ns string, seen map[string]time.Time, after time.Duration) {
	var pods corev1.PodList
	if err := k8sClient.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil || len(p.Finalizers) == 0 {
			continue
		}
		first, ok := seen[string(p.UID)]
		if !ok {
			first = time.Now()
			if seen != nil {
				seen[string(p.UID)] = first
			}
		}
		if time.Since(first) < after {
			continue
		}
		patch := client.MergeFrom(p.DeepCopy())
		p.Finalizers = nil
		_ = k8sClient.Patch(ctx, p, patch)
	}
}

// meshedDeployment is a Deployment of one replica of the suite's app pod.
func meshedDeployment(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: appPod("x").Spec},
		},
	}
}

// podRevisions lists the revisions that injected the pods of an app.
func podRevisions(g Gomega, ns, app string) []string {
	var pods corev1.PodList
	g.Expect(k8sClient.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels{"app": app})).To(Succeed())
	var out []string
	for _, p := range pods.Items {
		out = append(out, p.Annotations[injection.AnnotationInjectedRevision])
	}
	return out
}

func restartedFor(g Gomega, ns, name string) string {
	var d appsv1.Deployment
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d)).To(Succeed())
	return d.Annotations[controllers.AnnotationUpgradeTo]
}

// collectRevisionGarbage deletes what a removed MeshRevision owned, as kube-controller-manager's
// garbage collector would (envtest runs none).
func collectRevisionGarbage(ctx context.Context, revision string) {
	GinkgoHelper()
	sel := client.MatchingLabels{meshv1.LabelPartOf: meshv1.PartOfValue, meshv1.LabelRevision: revision}
	for _, list := range []client.ObjectList{
		&rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{}, &appsv1.DeploymentList{}, &corev1.ServiceList{},
		&corev1.ServiceAccountList{}, &policyv1.PodDisruptionBudgetList{}, &cmapi.CertificateList{},
	} {
		Expect(k8sClient.List(ctx, list, sel)).To(Succeed())
		Expect(meta.EachListItem(list, func(o runtime.Object) error {
			return client.IgnoreNotFound(k8sClient.Delete(ctx, o.(client.Object)))
		})).To(Succeed())
	}
}

// clearOtherMeshedPods removes what earlier specs left that would count in this Mesh's data
// plane and keep its revisions in use: injected pods outside the given namespaces, and
// knit.dev/rev labels on other namespaces. (A cluster would have ended those pods long ago.)
func clearOtherMeshedPods(ctx context.Context, keep ...string) {
	GinkgoHelper()
	var pods corev1.PodList
	Expect(k8sClient.List(ctx, &pods)).To(Succeed())
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Annotations[injection.AnnotationInjectedRevision] != "" && !slices.Contains(keep, p.Namespace) {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, p))).To(Succeed())
		}
	}
	var nss corev1.NamespaceList
	Expect(k8sClient.List(ctx, &nss, client.HasLabels{meshv1.LabelRevision})).To(Succeed())
	for _, ns := range nss.Items {
		if !slices.Contains(keep, ns.Name) {
			ensureNamespace(ctx, ns.Name, map[string]string{meshv1.LabelRevision: ""})
		}
	}
}

func gone(ctx context.Context, obj client.Object) func() bool {
	return func() bool { return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)) }
}

var _ = Describe("A RevisionBased upgrade", Ordered, func() {
	const (
		shop      = "upg-shop"
		pinnedNS  = "upg-pinned"
		revision2 = "default-v0-2-0"
	)
	selected := map[string]string{"test.knit.dev/upgrade": "true"}
	apps := []string{"d1", "d2", "d3", "d4", "guarded"}
	ctx := context.Background()
	var sim *deploymentStandin
	var second *controlPlane

	upgrading := func(g Gomega, reason string) *metav1.Condition {
		return expectCondition(g, getMesh(g), meshv1.ConditionUpgrading, metav1.ConditionTrue, reason)
	}

	BeforeAll(func() {
		deleteMesh(ctx)
		clearOtherMeshedPods(ctx, shop, pinnedNS)
		m := sampleMesh()
		m.Spec.Injection.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selected}
		m.Spec.Upgrade.BatchSize = 2
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		DeferCleanup(func() { deleteMesh(ctx) })
		DeferCleanup(standins.stopAll)
		standins.start(ctx, revision)
		ensureNamespace(ctx, shop, selected)
		ensureNamespace(ctx, pinnedNS, map[string]string{meshv1.LabelRevision: revision})
		DeferCleanup(func() {
			for _, ns := range []string{shop, pinnedNS} {
				for _, obj := range []client.Object{&appsv1.Deployment{}, &appsv1.ReplicaSet{}, &corev1.Pod{}, &policyv1.PodDisruptionBudget{}} {
					Expect(k8sClient.DeleteAllOf(ctx, obj, client.InNamespace(ns))).To(Succeed())
				}
				stopTerminatedPods(ctx, ns, nil, 0)
				ensureNamespace(ctx, ns, map[string]string{"test.knit.dev/upgrade": "", meshv1.LabelRevision: ""})
			}
		})
		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonAllReady)
			g.Expect(m.Status.Version).To(Equal("v0.1.0"))
			for _, ns := range []string{shop, pinnedNS} {
				g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: injection.TrustBundleName}, &corev1.ConfigMap{})).To(Succeed())
			}
		}).WithTimeout(60 * time.Second).Should(Succeed())
		// The API server matches webhook selectors against its own namespace cache: wait until
		// it injects there.
		Eventually(func() (string, error) { return createPod(ctx, shop) }).WithTimeout(10 * time.Second).Should(Equal(revision))
		Eventually(func() (string, error) { return createPod(ctx, pinnedNS) }).WithTimeout(10 * time.Second).Should(Equal(revision))
		Expect(k8sClient.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(shop))).To(Succeed())
		Expect(k8sClient.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(pinnedNS))).To(Succeed())

		sim = startDeploymentStandin(shop, pinnedNS)
		DeferCleanup(func() { sim.stop() })
		for _, app := range apps {
			Expect(k8sClient.Create(ctx, meshedDeployment(shop, app))).To(Succeed())
		}
		Expect(k8sClient.Create(ctx, meshedDeployment(pinnedNS, "pinned"))).To(Succeed())
		// A finished pod, as a completed Job leaves until its TTL: it runs no proxy, so it is
		// neither counted nor keeps the old revision in use when the upgrade is over.
		finished := appPod("job-done", func(p *corev1.Pod) { p.Namespace = shop; p.Spec.RestartPolicy = corev1.RestartPolicyNever })
		Expect(k8sClient.Create(ctx, finished)).To(Succeed())
		Expect(injected(finished)).To(BeTrue())
		finished.Status.Phase = corev1.PodSucceeded
		Expect(k8sClient.Status().Update(ctx, finished)).To(Succeed())
		// A budget that allows no disruption now (envtest runs no disruption controller, so its
		// status stays at zero allowed until the test says otherwise).
		Expect(k8sClient.Create(ctx, &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: shop},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}},
		})).To(Succeed())
		Eventually(func(g Gomega) {
			for _, app := range apps {
				g.Expect(podRevisions(g, shop, app)).To(Equal([]string{revision}), app)
			}
			g.Expect(podRevisions(g, pinnedNS, "pinned")).To(Equal([]string{revision}))
			m := getMesh(g)
			g.Expect(m.Status.DataPlane).NotTo(BeNil())
			g.Expect(m.Status.DataPlane.Versions).To(Equal([]meshv1.ProxyVersionCount{{Version: "v0.1.0", Proxies: 6}}))
			expectCondition(g, m, meshv1.ConditionUpgrading, metav1.ConditionFalse, meshv1.ReasonUpToDate)
			expectCondition(g, m, meshv1.ConditionDataPlaneSkew, metav1.ConditionFalse, meshv1.ReasonAsExpected)
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("restarts batchSize workloads at a time, waits for them, leaves the pinned and the PDB-blocked ones, and pauses after the batch", func() {
		sim.hold()
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Version = "v0.2.0" })
		second = standins.start(ctx, revision2)
		Eventually(func(g Gomega) {
			c := upgrading(g, meshv1.ReasonMovingWorkloads)
			g.Expect(c.Message).To(ContainSubstring("0/5 workloads on v0.2.0 (MeshRevision default-v0-2-0), batch 1, " +
				"waiting for deploy/d1 in ns upg-shop, deploy/d2 in ns upg-shop; 1 pinned with knit.dev/rev, not moved; " +
				"not restarted: deploy/guarded in ns upg-shop (PodDisruptionBudget guarded allows no disruption)"))
		}).WithTimeout(60 * time.Second).Should(Succeed())
		// The batch is restarted and nothing else: the next waits until it is available again.
		for app, want := range map[string]string{"d1": revision2, "d2": revision2, "d3": "", "d4": "", "guarded": ""} {
			Expect(restartedFor(Default, shop, app)).To(Equal(want), app)
		}
		Expect(restartedFor(Default, pinnedNS, "pinned")).To(BeEmpty())
		m := getMesh(Default)
		Expect(m.Status.Upgrade).NotTo(BeNil())
		Expect(m.Status.Upgrade.InProgress).To(Equal([]string{"deploy/d1 in ns upg-shop", "deploy/d2 in ns upg-shop"}))
		Expect(m.Status.Upgrade.BlockedByPDB).To(HaveLen(1))
		Expect(m.Status.Version).To(Equal("v0.1.0"))

		By("pausing: the batch in progress finishes, and no other starts")
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Upgrade.Paused = true })
		sim.release()
		Eventually(func(g Gomega) {
			c := upgrading(g, meshv1.ReasonUpgradePaused)
			g.Expect(c.Message).To(ContainSubstring("2/5 workloads on v0.2.0 (MeshRevision default-v0-2-0), batch 1, paused"))
			g.Expect(podRevisions(g, shop, "d1")).To(Equal([]string{revision2}))
			g.Expect(podRevisions(g, shop, "d2")).To(Equal([]string{revision2}))
			m := getMesh(g)
			g.Expect(m.Status.DataPlane.Versions).To(ConsistOf(
				meshv1.ProxyVersionCount{Version: "v0.1.0", Proxies: 4}, meshv1.ProxyVersionCount{Version: "v0.2.0", Proxies: 2}))
			g.Expect(m.Status.DataPlane.PinnedWorkloads).To(Equal(int32(1)))
			skew := expectCondition(g, m, meshv1.ConditionDataPlaneSkew, metav1.ConditionTrue, meshv1.ReasonProxiesBehind)
			g.Expect(skew.Message).To(ContainSubstring("4 of 6 proxies run a release older than the control plane's v0.2.0 (4 on v0.1.0)"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		for _, app := range []string{"d3", "d4", "guarded"} {
			Expect(restartedFor(Default, shop, app)).To(BeEmpty(), app)
			Expect(podRevisions(Default, shop, app)).To(Equal([]string{revision}), app)
		}

		var events eventsv1.EventList
		Expect(k8sClient.List(ctx, &events)).To(Succeed())
		var notes []string
		for _, e := range events.Items {
			if e.Reason == "UpgradeBatch" {
				notes = append(notes, e.Note)
			}
		}
		Expect(notes).To(ContainElement(ContainSubstring(
			"batch 1: restarting deploy/d1 in ns upg-shop, deploy/d2 in ns upg-shop onto MeshRevision default-v0-2-0 (v0.2.0)")))
	})

	It("rolls back mid-upgrade: the moved workloads move back the same way, and the new revision goes", func() {
		patchMesh(ctx, func(m *meshv1.Mesh) {
			m.Spec.Version = "v0.1.0"
			m.Spec.Upgrade.Paused = false
		})
		Eventually(func(g Gomega) {
			g.Expect(getMesh(g).Status.ActiveRevision).To(Equal(revision))
			for _, app := range apps {
				g.Expect(podRevisions(g, shop, app)).To(Equal([]string{revision}), app)
			}
			g.Expect(restartedFor(g, shop, "d1")).To(Equal(revision))
			g.Expect(restartedFor(g, shop, "d2")).To(Equal(revision))
		}).WithTimeout(60 * time.Second).Should(Succeed())
		Expect(restartedFor(Default, shop, "d3")).To(BeEmpty(), "a workload that never moved is not restarted")

		Eventually(gone(ctx, &meshv1.MeshRevision{ObjectMeta: metav1.ObjectMeta{Name: revision2}})).
			WithTimeout(30*time.Second).Should(BeTrue(), "no pod uses %s after the rollback", revision2)
		Eventually(gone(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "knit-injector-v0-2-0"}})).
			WithTimeout(10 * time.Second).Should(BeTrue())
		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionUpgrading, metav1.ConditionFalse, meshv1.ReasonUpToDate)
			g.Expect(m.Status.Version).To(Equal("v0.1.0"))
			g.Expect(m.Status.Upgrade).To(BeNil())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		standins.stop(second)
		collectRevisionGarbage(ctx, revision2)
	})

	It("upgrades to the end: moves the unblocked workload, keeps the old revision for the pinned one, then removes it and reports the new version", func() {
		var pdb policyv1.PodDisruptionBudget
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: shop, Name: "guarded"}, &pdb)).To(Succeed())
		pdb.Status.DisruptionsAllowed = 1
		Expect(k8sClient.Status().Update(ctx, &pdb)).To(Succeed())
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Version = "v0.2.0" })
		Eventually(func(g Gomega) {
			var rev meshv1.MeshRevision
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: revision2}, &rev)).To(Succeed())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		standins.start(ctx, revision2)

		Eventually(func(g Gomega) {
			for _, app := range apps {
				g.Expect(podRevisions(g, shop, app)).To(Equal([]string{revision2}), app)
			}
			c := upgrading(g, meshv1.ReasonRevisionInUse)
			g.Expect(c.Message).To(ContainSubstring("MeshRevision default-v0-1-0 still runs 1 pod(s) and namespaces labelled knit.dev/rev=default-v0-1-0: upg-pinned"))
		}).WithTimeout(90 * time.Second).Should(Succeed())
		Expect(getMesh(Default).Status.Version).To(Equal("v0.1.0"), "the old revision still runs")
		Expect(podRevisions(Default, pinnedNS, "pinned")).To(Equal([]string{revision}), "a pinned workload is not moved")

		By("unpinning the namespace: its workload moves, and the old revision goes")
		ensureNamespace(ctx, pinnedNS, map[string]string{meshv1.LabelRevision: "", "test.knit.dev/upgrade": "true"})
		Eventually(func(g Gomega) {
			g.Expect(podRevisions(g, pinnedNS, "pinned")).To(Equal([]string{revision2}))
		}).WithTimeout(60 * time.Second).Should(Succeed())
		Eventually(gone(ctx, &meshv1.MeshRevision{ObjectMeta: metav1.ObjectMeta{Name: revision}})).WithTimeout(30 * time.Second).Should(BeTrue())
		Eventually(gone(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "knit-injector-v0-1-0"}})).
			WithTimeout(10 * time.Second).Should(BeTrue())
		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionUpgrading, metav1.ConditionFalse, meshv1.ReasonUpToDate)
			g.Expect(m.Status.Version).To(Equal("v0.2.0"))
			g.Expect(m.Status.DataPlane.Versions).To(Equal([]meshv1.ProxyVersionCount{{Version: "v0.2.0", Proxies: 6}}))
			expectCondition(g, m, meshv1.ConditionDataPlaneSkew, metav1.ConditionFalse, meshv1.ReasonAsExpected)
		}).WithTimeout(30 * time.Second).Should(Succeed())
		collectRevisionGarbage(ctx, revision)

		By("having restarted each workload once per move: a replaced pod still terminating is not a reason to restart again")
		for app, moves := range map[string]int64{"d1": 3, "d2": 3, "d3": 1, "d4": 1, "guarded": 1} {
			var d appsv1.Deployment
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: shop, Name: app}, &d)).To(Succeed())
			Expect(d.Generation).To(Equal(1+moves), "%s: created, then restarted once per move", app)
		}
	})
})

var _ = Describe("An InPlace upgrade", Ordered, func() {
	const ns = "inplace-shop"
	selected := map[string]string{"test.knit.dev/inplace": "true"}
	ctx := context.Background()
	var cp *controlPlane

	BeforeAll(func() {
		deleteMesh(ctx)
		clearOtherMeshedPods(ctx, ns)
		m := sampleMesh()
		m.Spec.Injection.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selected}
		m.Spec.Upgrade.Strategy = meshv1.UpgradeInPlace
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		DeferCleanup(func() { deleteMesh(ctx) })
		DeferCleanup(standins.stopAll)
		cp = standins.start(ctx, revision)
		ensureNamespace(ctx, ns, selected)
		DeferCleanup(func() {
			Expect(k8sClient.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns))).To(Succeed())
			ensureNamespace(ctx, ns, map[string]string{"test.knit.dev/inplace": ""})
		})
		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonAllReady)
			g.Expect(m.Status.Version).To(Equal("v0.1.0"))
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: injection.TrustBundleName}, &corev1.ConfigMap{})).To(Succeed())
		}).WithTimeout(60 * time.Second).Should(Succeed())
		Eventually(func() (string, error) { return createPod(ctx, ns) }).WithTimeout(10 * time.Second).Should(Equal(revision))
	})

	It("rolls the one revision's control plane to the new release under the same name, and counts the proxies left behind", func() {
		cp.hold() // the Deployment controller is slow to roll the new image
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Version = "v0.2.0" })
		Eventually(func(g Gomega) {
			c := expectCondition(g, getMesh(g), meshv1.ConditionUpgrading, metav1.ConditionTrue, meshv1.ReasonRollingOutControlPlane)
			g.Expect(c.Message).To(ContainSubstring("the control plane of MeshRevision default-v0-1-0 rolls to v0.2.0 in place"))
			var dep appsv1.Deployment
			g.Expect(k8sClient.Get(ctx, cpKey, &dep)).To(Succeed())
			g.Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal("knit.local/knit/controlplane:v0.2.0"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(getMesh(Default).Status.Version).To(Equal("v0.1.0"), "until the control plane has rolled out")
		cp.release()

		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionUpgrading, metav1.ConditionFalse, meshv1.ReasonUpToDate)
			g.Expect(m.Status.Version).To(Equal("v0.2.0"))
			g.Expect(m.Status.ActiveRevision).To(Equal(revision), "the revision keeps its name")
			skew := expectCondition(g, m, meshv1.ConditionDataPlaneSkew, metav1.ConditionTrue, meshv1.ReasonProxiesBehind)
			g.Expect(skew.Message).To(ContainSubstring("1 of 1 proxies run a release older than the control plane's v0.2.0 (1 on v0.1.0); " +
				"they move when their pods restart"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		var revs meshv1.MeshRevisionList
		Expect(k8sClient.List(ctx, &revs)).To(Succeed())
		Expect(revs.Items).To(HaveLen(1), "no second revision")
		Expect(revs.Items[0].Spec.Version).To(Equal("v0.2.0"))
	})

	It("keeps the revision that took the release in place when the strategy goes back to RevisionBased", func() {
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Upgrade.Strategy = meshv1.UpgradeRevisionBased })
		Eventually(func(g Gomega) {
			m := getMesh(g)
			g.Expect(m.Status.ObservedGeneration).To(Equal(m.Generation))
			expectCondition(g, m, meshv1.ConditionReconciled, metav1.ConditionTrue, "")
			expectCondition(g, m, meshv1.ConditionUpgrading, metav1.ConditionFalse, meshv1.ReasonUpToDate)
			g.Expect(m.Status.ActiveRevision).To(Equal(revision))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		var revs meshv1.MeshRevisionList
		Expect(k8sClient.List(ctx, &revs)).To(Succeed())
		Expect(revs.Items).To(HaveLen(1), "a change of strategy alone makes no revision (it would restart every workload)")
		Expect(revs.Items[0].Name).To(Equal(revision))
	})
})
