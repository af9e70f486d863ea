/*
Copyright 2026 The knit Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package integration

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/versions"
)

func httpListener(name string, port int32) gatewayv1.Listener {
	return gatewayv1.Listener{Name: gatewayv1.SectionName(name), Port: gatewayv1.PortNumber(port), Protocol: gatewayv1.HTTPProtocolType}
}

func newGateway(ns, name string, listeners ...gatewayv1.Listener) *gatewayv1.Gateway {
	return &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       gatewayv1.GatewaySpec{GatewayClassName: "knit", Listeners: listeners},
	}
}

func gatewayCondition(g Gomega, key client.ObjectKey, t gatewayv1.GatewayConditionType) *metav1.Condition {
	var gw gatewayv1.Gateway
	g.Expect(k8sClient.Get(context.Background(), key, &gw)).To(Succeed())
	c := meta.FindStatusCondition(gw.Status.Conditions, string(t))
	g.Expect(c).NotTo(BeNil(), "condition %s of Gateway %s", t, key)
	g.Expect(c.ObservedGeneration).To(Equal(gw.Generation))
	return c
}

func listenerStatus(g Gomega, key client.ObjectKey, name string) gatewayv1.ListenerStatus {
	var gw gatewayv1.Gateway
	g.Expect(k8sClient.Get(context.Background(), key, &gw)).To(Succeed())
	for _, l := range gw.Status.Listeners {
		if string(l.Name) == name {
			return l
		}
	}
	g.Expect(name).To(BeEmpty(), "no status for listener %s of Gateway %s", name, key)
	return gatewayv1.ListenerStatus{}
}

func listenerCondition(l gatewayv1.ListenerStatus, t gatewayv1.ListenerConditionType) metav1.Condition {
	c := meta.FindStatusCondition(l.Conditions, string(t))
	if c == nil {
		return metav1.Condition{}
	}
	return *c
}

var _ = Describe("Gateways of class knit", Ordered, Label("gateway"), func() {
	ctx := context.Background()
	const ns, other = "gw-apps", "gw-other"
	proxyImage := ""

	BeforeAll(func() {
		deleteMesh(ctx)
		for _, n := range []string{ns, other} {
			Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}))).To(Succeed())
		}
		m := sampleMesh()
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, m)).To(Succeed())
			g.Expect(m.Status.ActiveRevision).NotTo(BeEmpty())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		release, err := versions.Default.Lookup(m.Spec.Version)
		Expect(err).NotTo(HaveOccurred())
		proxyImage = release.ProxyImage
	})
	AfterAll(func() {
		for _, n := range []string{ns, other} {
			Expect(k8sClient.DeleteAllOf(ctx, &gatewayv1.Gateway{}, client.InNamespace(n))).To(Succeed())
			Expect(k8sClient.DeleteAllOf(ctx, &gatewayv1.HTTPRoute{}, client.InNamespace(n))).To(Succeed())
		}
		deleteMesh(ctx)
	})

	It("installs the GatewayClass knit and accepts it", func() {
		Eventually(func(g Gomega) {
			var class gatewayv1.GatewayClass
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit"}, &class)).To(Succeed())
			g.Expect(class.Spec.ControllerName).To(BeEquivalentTo("knit.dev/gateway-controller"))
			g.Expect(meta.IsStatusConditionTrue(class.Status.Conditions, string(gatewayv1.GatewayClassConditionStatusAccepted))).To(BeTrue())
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("puts the GatewayClass knit back when it is deleted", func() {
		var class gatewayv1.GatewayClass
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit"}, &class)).To(Succeed())
		uid := class.UID
		Expect(k8sClient.Delete(ctx, &class)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit"}, &class)).To(Succeed())
			g.Expect(class.UID).NotTo(Equal(uid))
			g.Expect(meta.IsStatusConditionTrue(class.Status.Conditions, string(gatewayv1.GatewayClassConditionStatusAccepted))).To(BeTrue())
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("runs a Gateway as a knit-proxy Deployment, Service, ServiceAccount and PodDisruptionBudget it owns", func() {
		gw := newGateway(ns, "web", httpListener("http", 80))
		Expect(k8sClient.Create(ctx, gw)).To(Succeed())
		key := client.ObjectKey{Namespace: ns, Name: "web-knit"}

		var dep appsv1.Deployment
		var svc corev1.Service
		var sa corev1.ServiceAccount
		var pdb policyv1.PodDisruptionBudget
		Eventually(func(g Gomega) {
			for _, o := range []client.Object{&dep, &svc, &sa, &pdb} {
				g.Expect(k8sClient.Get(ctx, key, o)).To(Succeed())
			}
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(metav1.IsControlledBy(&dep, gw)).To(BeTrue())
		Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(1)))
		pod := dep.Spec.Template
		Expect(pod.Labels).To(HaveKeyWithValue("knit.dev/inject", "false"), "a gateway pod gets no sidecar")
		Expect(pod.Labels).To(HaveKeyWithValue("gateway.networking.k8s.io/gateway-name", "web"))
		Expect(pod.Spec.InitContainers).To(BeEmpty(), "a gateway captures no traffic")
		Expect(pod.Spec.ServiceAccountName).To(Equal("web-knit"))
		Expect(pod.Spec.SecurityContext.Sysctls).To(ContainElement(corev1.Sysctl{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}))
		Expect(pod.Spec.Containers).To(HaveLen(1))
		c := pod.Spec.Containers[0]
		Expect(c.Image).To(Equal(proxyImage))
		Expect(c.Args).To(ContainElement("--gateway"))
		Expect(c.Env).To(ContainElements(
			corev1.EnvVar{Name: "KNIT_GATEWAY", Value: ns + "/web"},
			corev1.EnvVar{Name: "KNIT_CONTROL_PLANE", Value: "knit-controlplane-v0-1-0.knit-system.svc:15010"},
		))
		Expect(c.Ports).To(ContainElement(HaveField("ContainerPort", BeEquivalentTo(80))))
		Expect(*c.SecurityContext.RunAsNonRoot).To(BeTrue())

		Expect(metav1.IsControlledBy(&svc, gw)).To(BeTrue())
		Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
		Expect(svc.Spec.Ports).To(HaveLen(1))
		Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(80))
		Expect(svc.Spec.Selector).To(Equal(dep.Spec.Selector.MatchLabels))
		Expect(metav1.IsControlledBy(&sa, gw)).To(BeTrue())
		Expect(metav1.IsControlledBy(&pdb, gw)).To(BeTrue())

		By("the proxies verify the control plane with the trust bundle the Mesh puts in the Gateway's namespace")
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "knit-trust-bundle"}, &corev1.ConfigMap{})
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("gives the proxies the Gateway's own workload identity and the Mesh's mtls.mode", func() {
		key := client.ObjectKey{Namespace: ns, Name: "web-knit"}
		proxyEnv := func(g Gomega) []corev1.EnvVar {
			var dep appsv1.Deployment
			g.Expect(k8sClient.Get(ctx, key, &dep)).To(Succeed())
			g.Expect(dep.Spec.Template.Spec.Containers).To(HaveLen(1))
			return dep.Spec.Template.Spec.Containers[0].Env
		}
		var dep appsv1.Deployment
		Expect(k8sClient.Get(ctx, key, &dep)).To(Succeed())
		pod := dep.Spec.Template.Spec
		Expect(pod.ServiceAccountName).To(Equal("web-knit"))
		Expect(pod.Containers[0].Env).To(ContainElements(
			corev1.EnvVar{Name: "KNIT_IDENTITY", Value: "spiffe://cluster.local/ns/" + ns + "/sa/web-knit"},
			corev1.EnvVar{Name: "KNIT_MTLS_MODE", Value: "PERMISSIVE"},
			corev1.EnvVar{Name: "KNIT_TOKEN_FILE", Value: "/var/run/secrets/knit/token"},
		))
		By("the token the identity service checks: projected, with the identity audience")
		Expect(pod.Volumes).To(ContainElement(And(
			HaveField("Name", "knit-token"),
			HaveField("VolumeSource.Projected.Sources", ContainElement(HaveField("ServiceAccountToken", And(
				Not(BeNil()), HaveField("Audience", "knit.dev"), HaveField("Path", "token"))))),
		)))
		Expect(pod.Containers[0].VolumeMounts).To(ContainElement(And(HaveField("Name", "knit-token"), HaveField("ReadOnly", true))))

		By("a change of mtls.mode reaches the proxies")
		setMode := func(mode meshv1.MTLSMode) {
			Eventually(func() error {
				var m meshv1.Mesh
				if err := k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m); err != nil {
					return err
				}
				m.Spec.MTLS.Mode = mode
				return k8sClient.Update(ctx, &m)
			}).WithTimeout(30 * time.Second).Should(Succeed())
		}
		setMode(meshv1.MTLSStrict)
		DeferCleanup(setMode, meshv1.MTLSPermissive)
		Eventually(proxyEnv).WithTimeout(30 * time.Second).Should(ContainElement(corev1.EnvVar{Name: "KNIT_MTLS_MODE", Value: "STRICT"}))
	})

	It("is Accepted at once and Programmed, with the Service's address, once a proxy is available", func() {
		gwKey := client.ObjectKey{Namespace: ns, Name: "web"}
		Eventually(func(g Gomega) {
			g.Expect(gatewayCondition(g, gwKey, gatewayv1.GatewayConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
			c := gatewayCondition(g, gwKey, gatewayv1.GatewayConditionProgrammed)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Message).To(ContainSubstring("no available proxy"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			var m meshv1.Mesh
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			c := meta.FindStatusCondition(m.Status.Conditions, meshv1.ConditionGatewaysReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Message).To(ContainSubstring("Gateway gw-apps/web"))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		Expect(updateDeploymentStatus(ctx, client.ObjectKey{Namespace: ns, Name: "web-knit"})).To(Succeed())
		var svc corev1.Service
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-knit"}, &svc)).To(Succeed())
		Expect(svc.Spec.ClusterIP).NotTo(BeEmpty())
		Eventually(func(g Gomega) {
			g.Expect(gatewayCondition(g, gwKey, gatewayv1.GatewayConditionProgrammed).Status).To(Equal(metav1.ConditionTrue))
			var gw gatewayv1.Gateway
			g.Expect(k8sClient.Get(ctx, gwKey, &gw)).To(Succeed())
			g.Expect(gw.Status.Addresses).To(ConsistOf(gatewayv1.GatewayStatusAddress{Type: ptr.To(gatewayv1.IPAddressType), Value: svc.Spec.ClusterIP}))
			l := listenerStatus(g, gwKey, "http")
			g.Expect(listenerCondition(l, gatewayv1.ListenerConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(listenerCondition(l, gatewayv1.ListenerConditionProgrammed).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(listenerCondition(l, gatewayv1.ListenerConditionResolvedRefs).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(listenerCondition(l, gatewayv1.ListenerConditionConflicted).Status).To(Equal(metav1.ConditionFalse))
			g.Expect(l.SupportedKinds).To(ConsistOf(HaveField("Kind", BeEquivalentTo("HTTPRoute")), HaveField("Kind", BeEquivalentTo("GRPCRoute"))))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			var m meshv1.Mesh
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1.ConditionGatewaysReady)).To(BeTrue())
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("counts the routes attached to each listener, as allowedRoutes and hostnames allow", func() {
		gwKey := client.ObjectKey{Namespace: ns, Name: "web"}
		route := func(namespace, name string, hostnames ...gatewayv1.Hostname) *gatewayv1.HTTPRoute {
			return &gatewayv1.HTTPRoute{
				ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
				Spec: gatewayv1.HTTPRouteSpec{
					CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
						Name: "web", Namespace: ptr.To(gatewayv1.Namespace(ns)),
					}}},
					Hostnames: hostnames,
				},
			}
		}
		Expect(k8sClient.Create(ctx, route(ns, "same-namespace"))).To(Succeed())
		// allowedRoutes defaults to the Gateway's own namespace.
		Expect(k8sClient.Create(ctx, route(other, "other-namespace"))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(listenerStatus(g, gwKey, "http").AttachedRoutes).To(BeEquivalentTo(1))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("a listener with a hostname takes only routes whose hostnames meet it")
		var gw gatewayv1.Gateway
		Expect(k8sClient.Get(ctx, gwKey, &gw)).To(Succeed())
		gw.Spec.Listeners[0].Hostname = ptr.To(gatewayv1.Hostname("*.example.com"))
		Expect(k8sClient.Update(ctx, &gw)).To(Succeed())
		Expect(k8sClient.Create(ctx, route(ns, "matching-host", "shop.example.com"))).To(Succeed())
		Expect(k8sClient.Create(ctx, route(ns, "other-host", "shop.example.org"))).To(Succeed())
		Eventually(func(g Gomega) {
			// same-namespace (no hostnames) and matching-host.
			g.Expect(listenerStatus(g, gwKey, "http").AttachedRoutes).To(BeEquivalentTo(2))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("counts routes from the namespaces a listener's selector picks, following namespace labels", func() {
		selector := gatewayv1.NamespacesFromSelector
		l := httpListener("http", 80)
		l.AllowedRoutes = &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &selector,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"gw-routes": "yes"}}}}
		gw := newGateway(ns, "selective", l)
		Expect(k8sClient.Create(ctx, gw)).To(Succeed())
		gwKey := client.ObjectKeyFromObject(gw)
		Expect(k8sClient.Create(ctx, &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "to-selective"},
			Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Name: "selective", Namespace: ptr.To(gatewayv1.Namespace(ns)),
			}}}},
		})).To(Succeed())
		Eventually(func(g Gomega) {
			ls := listenerStatus(g, gwKey, "http")
			g.Expect(listenerCondition(ls, gatewayv1.ListenerConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(ls.AttachedRoutes).To(BeEquivalentTo(0))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("labelling the route's namespace so the selector picks it")
		var n corev1.Namespace
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: other}, &n)).To(Succeed())
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels["gw-routes"] = "yes"
		Expect(k8sClient.Update(ctx, &n)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(listenerStatus(g, gwKey, "http").AttachedRoutes).To(BeEquivalentTo(1))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("reports listeners it cannot serve with Gateway API's reasons, and serves the rest", func() {
		gw := newGateway(ns, "mixed",
			httpListener("http", 8080),
			gatewayv1.Listener{Name: "tcp", Port: 9000, Protocol: gatewayv1.TCPProtocolType},
			gatewayv1.Listener{Name: "clash-http", Port: 7000, Protocol: gatewayv1.HTTPProtocolType},
			gatewayv1.Listener{Name: "clash-udp", Port: 7000, Protocol: gatewayv1.UDPProtocolType},
			gatewayv1.Listener{Name: "admin", Port: 15020, Protocol: gatewayv1.HTTPProtocolType},
		)
		Expect(k8sClient.Create(ctx, gw)).To(Succeed())
		key := client.ObjectKeyFromObject(gw)
		Eventually(func(g Gomega) {
			c := gatewayCondition(g, key, gatewayv1.GatewayConditionAccepted)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(BeEquivalentTo(gatewayv1.GatewayReasonListenersNotValid))
			g.Expect(listenerCondition(listenerStatus(g, key, "http"), gatewayv1.ListenerConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
			tcp := listenerCondition(listenerStatus(g, key, "tcp"), gatewayv1.ListenerConditionAccepted)
			g.Expect(tcp.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(tcp.Reason).To(BeEquivalentTo(gatewayv1.ListenerReasonUnsupportedProtocol))
			clash := listenerCondition(listenerStatus(g, key, "clash-http"), gatewayv1.ListenerConditionConflicted)
			g.Expect(clash.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(clash.Reason).To(BeEquivalentTo(gatewayv1.ListenerReasonProtocolConflict))
			admin := listenerCondition(listenerStatus(g, key, "admin"), gatewayv1.ListenerConditionAccepted)
			g.Expect(admin.Reason).To(BeEquivalentTo(gatewayv1.ListenerReasonPortUnavailable))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		var svc corev1.Service
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mixed-knit"}, &svc)).To(Succeed())
		Expect(svc.Spec.Ports).To(ConsistOf(HaveField("Port", BeEquivalentTo(8080))), "only the served listener's port")
	})

	It("refuses a Gateway with no listener it can serve, or with addresses, and creates nothing for it", func() {
		tcp := newGateway(ns, "tcp-only", gatewayv1.Listener{Name: "tcp", Port: 9000, Protocol: gatewayv1.TCPProtocolType})
		addr := newGateway(ns, "with-address", httpListener("http", 80))
		addr.Spec.Addresses = []gatewayv1.GatewaySpecAddress{{Type: ptr.To(gatewayv1.IPAddressType), Value: "10.0.0.1"}}
		Expect(k8sClient.Create(ctx, tcp)).To(Succeed())
		Expect(k8sClient.Create(ctx, addr)).To(Succeed())
		Eventually(func(g Gomega) {
			c := gatewayCondition(g, client.ObjectKeyFromObject(tcp), gatewayv1.GatewayConditionAccepted)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(BeEquivalentTo(gatewayv1.GatewayReasonListenersNotValid))
			c = gatewayCondition(g, client.ObjectKeyFromObject(addr), gatewayv1.GatewayConditionAccepted)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(BeEquivalentTo(gatewayv1.GatewayReasonUnsupportedAddress))
			g.Expect(gatewayCondition(g, client.ObjectKeyFromObject(addr), gatewayv1.GatewayConditionProgrammed).Status).To(Equal(metav1.ConditionFalse))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		for _, name := range []string{"tcp-only-knit", "with-address-knit"} {
			Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &appsv1.Deployment{}))).To(BeTrue(), name)
		}
	})

	It("takes service type, replicas, resources and autoscaling from a parameters ConfigMap, and refuses bad ones", func() {
		// Labelled knit's, the ConfigMap is watched: a change applies at once.
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge-params",
			Labels: map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue}}, Data: map[string]string{
			"serviceType": "NodePort", "replicas": "3", "resources": `{"requests":{"cpu":"50m"}}`,
		}}
		Expect(k8sClient.Create(ctx, cm)).To(Succeed())
		gw := newGateway(ns, "edge", httpListener("http", 80))
		gw.Spec.Infrastructure = &gatewayv1.GatewayInfrastructure{ParametersRef: &gatewayv1.LocalParametersReference{Kind: "ConfigMap", Name: "edge-params"}}
		Expect(k8sClient.Create(ctx, gw)).To(Succeed())
		key := client.ObjectKey{Namespace: ns, Name: "edge-knit"}
		Eventually(func(g Gomega) {
			var svc corev1.Service
			g.Expect(k8sClient.Get(ctx, key, &svc)).To(Succeed())
			g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))
			var dep appsv1.Deployment
			g.Expect(k8sClient.Get(ctx, key, &dep)).To(Succeed())
			g.Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
			g.Expect(dep.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String()).To(Equal("50m"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		var svc corev1.Service
		Expect(k8sClient.Get(ctx, key, &svc)).To(Succeed())
		nodePort := svc.Spec.Ports[0].NodePort
		Expect(nodePort).NotTo(BeZero())

		By("maxReplicas hands the replica count to a HorizontalPodAutoscaler")
		cm.Data["maxReplicas"], cm.Data["minReplicas"] = "5", "2"
		Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		Eventually(func(g Gomega) {
			var hpa autoscalingv2.HorizontalPodAutoscaler
			g.Expect(k8sClient.Get(ctx, key, &hpa)).To(Succeed())
			g.Expect(hpa.Spec.MaxReplicas).To(BeEquivalentTo(5))
			g.Expect(hpa.Spec.MinReplicas).To(HaveValue(BeEquivalentTo(2)))
			g.Expect(hpa.Spec.ScaleTargetRef.Name).To(Equal("edge-knit"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(k8sClient.Get(ctx, key, &svc)).To(Succeed())
		Expect(svc.Spec.Ports[0].NodePort).To(Equal(nodePort), "the allocated node port is kept")

		By("a bad value is InvalidParameters, and the running objects stay as they are")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
		cm.Data["serviceType"] = "External"
		Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		Eventually(func(g Gomega) {
			c := gatewayCondition(g, client.ObjectKeyFromObject(gw), gatewayv1.GatewayConditionAccepted)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(BeEquivalentTo(gatewayv1.GatewayReasonInvalidParameters))
			g.Expect(c.Message).To(ContainSubstring("serviceType"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(k8sClient.Get(ctx, key, &svc)).To(Succeed())
		Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))

		By("without maxReplicas the HorizontalPodAutoscaler goes")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
		cm.Data = map[string]string{"replicas": "2"}
		Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, key, &autoscalingv2.HorizontalPodAutoscaler{}))).To(BeTrue())
			var dep appsv1.Deployment
			g.Expect(k8sClient.Get(ctx, key, &dep)).To(Succeed())
			g.Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("makes and owns a Gateway for each spec.gateways entry, converges on changes, and deletes removed ones", func() {
		patchMesh(ctx, func(m *meshv1.Mesh) {
			m.Spec.Gateways = []meshv1.GatewaySpec{{
				Name: "ingress", Namespace: other, Replicas: 2, ServiceType: meshv1.GatewayServiceType(corev1.ServiceTypeClusterIP),
				Ports: []meshv1.GatewayPort{{Name: "http", Port: 80, Protocol: "HTTP"}},
			}}
		})
		var m meshv1.Mesh
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
		gwKey := client.ObjectKey{Namespace: other, Name: "ingress"}
		depKey := client.ObjectKey{Namespace: other, Name: "ingress-knit"}
		Eventually(func(g Gomega) {
			var gw gatewayv1.Gateway
			g.Expect(k8sClient.Get(ctx, gwKey, &gw)).To(Succeed())
			g.Expect(metav1.IsControlledBy(&gw, &m)).To(BeTrue(), "deleting the Mesh deletes it (garbage collection)")
			g.Expect(gw.Spec.GatewayClassName).To(BeEquivalentTo("knit"))
			g.Expect(gw.Spec.Listeners).To(HaveLen(1))
			g.Expect(gw.Spec.Listeners[0].Port).To(BeEquivalentTo(80))
			var dep appsv1.Deployment
			g.Expect(k8sClient.Get(ctx, depKey, &dep)).To(Succeed())
			g.Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
			g.Expect(metav1.IsControlledBy(&dep, &gw)).To(BeTrue())
			var svc corev1.Service
			g.Expect(k8sClient.Get(ctx, depKey, &svc)).To(Succeed())
			g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: other, Name: "knit-trust-bundle"}, &corev1.ConfigMap{})).To(Succeed())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			c := meta.FindStatusCondition(m.Status.Conditions, meshv1.ConditionGatewaysReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Message).To(ContainSubstring("Gateway gw-other/ingress"))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("changing the entry changes the Gateway and its Deployment")
		patchMesh(ctx, func(m *meshv1.Mesh) {
			m.Spec.Gateways[0].Replicas = 3
			m.Spec.Gateways[0].Ports = append(m.Spec.Gateways[0].Ports, meshv1.GatewayPort{Name: "alt", Port: 8081, Protocol: "HTTP"})
		})
		Eventually(func(g Gomega) {
			var dep appsv1.Deployment
			g.Expect(k8sClient.Get(ctx, depKey, &dep)).To(Succeed())
			g.Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
			var svc corev1.Service
			g.Expect(k8sClient.Get(ctx, depKey, &svc)).To(Succeed())
			g.Expect(svc.Spec.Ports).To(HaveLen(2))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("a proxy being available makes it Programmed, and the Mesh's GatewaysReady True")
		Expect(updateDeploymentStatus(ctx, depKey)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(gatewayCondition(g, gwKey, gatewayv1.GatewayConditionProgrammed).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("removing the entry deletes that Gateway only")
		patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Gateways = nil })
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, gwKey, &gatewayv1.Gateway{}))
		}).WithTimeout(30 * time.Second).Should(BeTrue())
		var user gatewayv1.Gateway
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &user)).To(Succeed())
		Expect(user.DeletionTimestamp).To(BeNil())
		Expect(metav1.GetControllerOf(&user)).To(BeNil(), "a person's Gateway is not the Mesh's: deleting the Mesh leaves it")
	})
})
