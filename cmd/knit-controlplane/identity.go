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

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/knit-mesh/knit/controlplane/identity"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// identityFlags configure the identity (CSR) server.
type identityFlags struct {
	addr                  string
	duration, renewBefore time.Duration
	// testDuration (test only) replaces duration; see lifetime.
	testDuration time.Duration
	approve      bool
	limits       identity.Limits
}

func (f *identityFlags) register(fs *flag.FlagSet) {
	f.limits = identity.DefaultLimits()
	fs.StringVar(&f.addr, "identity-addr", ":15012", "address of the identity server (gRPC over TLS); empty disables it")
	fs.DurationVar(&f.duration, "workload-cert-duration", 24*time.Hour, "lifetime of workload certificates (trust.workloadCertDuration)")
	fs.DurationVar(&f.renewBefore, "workload-cert-renew-before", 8*time.Hour, "how long before expiry proxies renew (trust.workloadCertRenewBefore)")
	fs.DurationVar(&f.testDuration, "test-workload-cert-duration", 0,
		"TEST ONLY: issue workload certificates for this long instead of --workload-cert-duration (which the Mesh API keeps at 1h or more), "+
			"renewing them at the same fraction of their life, so a test sees renewals within minutes; 0 (the default) turns it off")
	fs.BoolVar(&f.approve, "approve-workload-certificates", true,
		"approve the CertificateRequests the identity server created and validated; false leaves approval to another approver (approver-policy)")
	fs.IntVar(&f.limits.MaxConcurrent, "identity-max-concurrent", f.limits.MaxConcurrent, "certificate requests served at once")
	fs.DurationVar(&f.limits.PerPodInterval, "identity-pod-interval", f.limits.PerPodInterval, "a pod may ask once per interval after its burst")
	fs.IntVar(&f.limits.PerPodBurst, "identity-pod-burst", f.limits.PerPodBurst, "requests a pod may make at once")
	fs.DurationVar(&f.limits.Timeout, "identity-timeout", f.limits.Timeout, "deadline of one certificate request, issuance included")
}

// lifetime is how long workload certificates live and how long before expiry proxies renew
// them: the Mesh's settings, or with the test-only duration set, that duration with renewal at
// the same fraction of the lifetime as the Mesh asks (the defaults 24h/8h: a third before
// expiry).
func (f *identityFlags) lifetime() (duration, renewBefore time.Duration, err error) {
	if f.testDuration == 0 {
		return f.duration, f.renewBefore, nil
	}
	if f.testDuration < 0 || f.duration <= 0 || f.renewBefore <= 0 || f.renewBefore >= f.duration {
		return 0, 0, fmt.Errorf("--test-workload-cert-duration=%s needs a positive value and --workload-cert-renew-before (%s) shorter than --workload-cert-duration (%s)",
			f.testDuration, f.renewBefore, f.duration)
	}
	scaled := time.Duration(float64(f.testDuration) * float64(f.renewBefore) / float64(f.duration))
	return f.testDuration, scaled, nil
}

// newIdentityServer builds the identity server with clients for the API server, the trust bundle
// of the control plane's namespace, and the mesh's issuer.
func newIdentityServer(log logr.Logger, restConfig *rest.Config, o options, reg prometheus.Registerer) (*identity.Server, error) {
	namespace := os.Getenv("POD_NAMESPACE")
	if namespace == "" {
		return nil, errors.New("POD_NAMESPACE is not set: the identity server creates CertificateRequests in the control plane's namespace")
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(cmapi.AddToScheme(scheme))
	c, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("identity: API client: %w", err)
	}
	duration, renewBefore, err := o.identity.lifetime()
	if err != nil {
		return nil, err
	}
	if o.identity.testDuration != 0 {
		log.Info("TEST ONLY: workload certificates are short-lived (--test-workload-cert-duration)", "duration", duration.String(), "renewBefore", renewBefore.String())
	}
	return identity.New(identity.Config{
		TrustDomain: o.trustDomain,
		Audience:    injection.TokenAudience,
		Namespace:   namespace,
		Issuer:      cmmeta.IssuerReference{Name: o.issuerName, Kind: o.issuerKind, Group: o.issuerGroup},
		Duration:    duration, RenewBefore: renewBefore,
		Approve: o.identity.approve,
		Client:  c, APIReader: c,
		TrustBundle: trustBundleReader(c, namespace),
		Limits:      o.identity.limits,
		Log:         log.WithName("identity"),
	}, reg)
}

// trustBundleReader reads the roots the operator distributes (ConfigMap knit-trust-bundle) in
// the control plane's namespace, at each request, so a rotation is served at once.
func trustBundleReader(c client.Reader, namespace string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		var cm corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: injection.TrustBundleName}, &cm); err != nil {
			return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, injection.TrustBundleName, err)
		}
		return []byte(cm.Data[injection.TrustBundleKey]), nil
	}
}

// serveIdentity serves srv on addr over TLS with the serving certificate until ctx ends.
func serveIdentity(ctx context.Context, log logr.Logger, srv *identity.Server, addr string, limits identity.Limits,
	getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("identity server: %w", err)
	}
	g := identity.NewGRPCServer(getCertificate, limits)
	srv.Register(g)
	go func() {
		<-ctx.Done()
		g.GracefulStop()
	}()
	go func() {
		if err := g.Serve(l); err != nil {
			log.Error(err, "identity server stopped")
		}
	}()
	log.Info("identity server listening", "address", l.Addr().String())
	return nil
}
