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
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/webhooks"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// controlPlanes stands in for what envtest does not run behind a revision's control plane: its
// pods, the Deployment controller and the EndpointSlice controller. For a revision it serves
// knit's real injection webhook on 127.0.0.1 with the serving certificate cert-manager issued,
// and the API server reaches it through the revision's Service (testenv routes Service
// connections here), verifying it against the caBundle the operator wrote. Like a pod, it
// loads the certificate when it starts, and again when the Deployment rolls (its generation
// moves): it never serves a certificate newer than its last rollout.
type controlPlanes struct {
	mu      sync.Mutex
	running map[client.ObjectKey]*controlPlane // by Service
}

type controlPlane struct {
	revision string
	key      client.ObjectKey
	cert     atomic.Pointer[tls.Certificate]
	server   *http.Server
	addr     string
	held     atomic.Bool
	done     chan struct{}
}

var standins = &controlPlanes{running: map[client.ObjectKey]*controlPlane{}}

func revisionServiceKey(revision string) client.ObjectKey {
	return client.ObjectKey{Namespace: cpNamespace, Name: "knit-controlplane-" + strings.TrimPrefix(revision, meshv1.MeshName+"-")}
}

// dial connects the API server to the stand-in behind a Service's ClusterIP, or refuses as a
// Service without endpoints would.
func (c *controlPlanes) dial(ctx context.Context, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var services corev1.ServiceList
	if err := k8sClient.List(ctx, &services); err != nil {
		return nil, err
	}
	for _, svc := range services.Items {
		if svc.Spec.ClusterIP != host {
			continue
		}
		c.mu.Lock()
		cp := c.running[client.ObjectKeyFromObject(&svc)]
		c.mu.Unlock()
		if cp == nil {
			return nil, fmt.Errorf("no control-plane pod runs behind Service %s/%s", svc.Namespace, svc.Name)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", cp.addr)
	}
	return nil, fmt.Errorf("no Service has ClusterIP %s", host)
}

// start runs the revision's control plane: serving, Deployment available, endpoint ready, until
// stopAll.
func (c *controlPlanes) start(ctx context.Context, revision string) *controlPlane {
	GinkgoHelper()
	cp := &controlPlane{revision: revision, key: revisionServiceKey(revision), done: make(chan struct{})}
	Eventually(func(g Gomega) { g.Expect(cp.loadCertificate(ctx)).To(Succeed()) }).WithTimeout(90 * time.Second).Should(Succeed())

	mux := http.NewServeMux()
	mux.Handle(webhooks.InjectPath, webhooks.NewInjectionWebhook(&webhooks.PodInjector{
		Config: func() (injection.Config, error) {
			cfg := testInjectionConfig
			cfg.Revision = revision
			// The release the revision runs, as its real control plane is told (--proxy-version).
			cfg.ProxyVersion = "v" + strings.ReplaceAll(strings.TrimPrefix(revision, meshv1.MeshName+"-v"), "-", ".")
			return cfg, nil
		},
		Namespaces: suiteNamespaces,
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	cp.addr = l.Addr().String()
	cp.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cp.cert.Load(), nil
		}},
	}
	go func() { _ = cp.server.ServeTLS(l, "", "") }()

	cp.rollOut(ctx)
	Expect(ensureEndpoint(ctx, cp.key, revision)).To(Succeed())
	c.mu.Lock()
	c.running[cp.key] = cp
	c.mu.Unlock()
	go cp.followRollouts()
	return cp
}

// stopAll stops every running stand-in, as at the end of a container that started them.
func (c *controlPlanes) stopAll() {
	c.mu.Lock()
	var all []*controlPlane
	for _, cp := range c.running {
		all = append(all, cp)
	}
	c.mu.Unlock()
	for _, cp := range all {
		c.stop(cp)
	}
}

func (c *controlPlanes) stop(cp *controlPlane) {
	c.mu.Lock()
	delete(c.running, cp.key)
	c.mu.Unlock()
	close(cp.done)
	_ = cp.server.Close()
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: cp.key.Namespace, Name: cp.key.Name + "-standin"}}
	_ = client.IgnoreNotFound(k8sClient.Delete(context.Background(), slice))
}

// hold stops following the Deployment, as a slow rollout would; release resumes.
func (cp *controlPlane) hold()    { cp.held.Store(true) }
func (cp *controlPlane) release() { cp.held.Store(false) }

func (cp *controlPlane) loadCertificate(ctx context.Context) error {
	var secret corev1.Secret
	if err := k8sClient.Get(ctx, cp.key, &secret); err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return fmt.Errorf("Secret %s: %w", cp.key, err)
	}
	cp.cert.Store(&cert)
	return nil
}

// rollOut restarts the pods with the Secret as it is now and reports the rollout complete.
func (cp *controlPlane) rollOut(ctx context.Context) {
	GinkgoHelper()
	Expect(cp.loadCertificate(ctx)).To(Succeed())
	markAvailable(ctx, cp.key)
}

// followRollouts plays the Deployment controller: a new generation is rolled out.
func (cp *controlPlane) followRollouts() {
	defer GinkgoRecover()
	ctx := context.Background()
	for {
		select {
		case <-cp.done:
			return
		case <-time.After(200 * time.Millisecond):
		}
		if cp.held.Load() {
			continue
		}
		var dep appsv1.Deployment
		if err := k8sClient.Get(ctx, cp.key, &dep); err != nil || dep.Status.ObservedGeneration >= dep.Generation {
			continue
		}
		if err := cp.loadCertificate(ctx); err != nil {
			continue
		}
		_ = updateDeploymentStatus(ctx, cp.key)
	}
}

// ensureEndpoint plays the EndpointSlice controller: one ready endpoint for the Service, with
// the Service's labels. Its address is documentation space (RFC 5737): nothing dials it.
func ensureEndpoint(ctx context.Context, svc client.ObjectKey, revision string) error {
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-standin"}}
	_, err := controllerutil.CreateOrUpdate(ctx, k8sClient, slice, func() error {
		slice.Labels = map[string]string{
			discoveryv1.LabelServiceName: svc.Name,
			discoveryv1.LabelManagedBy:   "standin.test.knit.dev",
			meshv1.LabelPartOf:           meshv1.PartOfValue,
			meshv1.LabelComponent:        "controlplane",
			meshv1.LabelRevision:         revision,
		}
		slice.AddressType = discoveryv1.AddressTypeIPv4
		slice.Endpoints = []discoveryv1.Endpoint{{
			Addresses:  []string{"192.0.2.10"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}}
		slice.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("webhook"), Port: ptr.To[int32](8443)}}
		return nil
	})
	return err
}

// updateDeploymentStatus reports every replica of the current generation available.
func updateDeploymentStatus(ctx context.Context, key client.ObjectKey) error {
	var dep appsv1.Deployment
	if err := k8sClient.Get(ctx, key, &dep); err != nil {
		return err
	}
	replicas := ptr.Deref(dep.Spec.Replicas, 1)
	dep.Status = appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation,
		Replicas:           replicas, ReadyReplicas: replicas, AvailableReplicas: replicas, UpdatedReplicas: replicas,
		Conditions: []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
			LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	return k8sClient.Status().Update(ctx, &dep)
}
