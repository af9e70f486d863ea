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

package translate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/internal/gateway"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/metrics"
	proxyxds "github.com/knit-mesh/knit/proxy/xds"
)

// selfSigned is a PEM certificate for names and its key.
func selfSigned(t *testing.T, cn string, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func tlsSecret(ns, name string, typ corev1.SecretType, crt, key []byte) corev1.Secret {
	return corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: typ,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
}

func httpsListener(name string, port int32, hostname string, refs ...gwv1.SecretObjectReference) gwv1.Listener {
	all := gwv1.NamespacesFromAll
	l := gwv1.Listener{Name: gwv1.SectionName(name), Port: gwv1.PortNumber(port), Protocol: gwv1.HTTPSProtocolType,
		TLS:           &gwv1.ListenerTLSConfig{CertificateRefs: refs},
		AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}}}
	if hostname != "" {
		l.Hostname = ptr.To(gwv1.Hostname(hostname))
	}
	return l
}

func secretRef(ns, name string) gwv1.SecretObjectReference {
	ref := gwv1.SecretObjectReference{Name: gwv1.ObjectName(name)}
	if ns != "" {
		ref.Namespace = ptr.To(gwv1.Namespace(ns))
	}
	return ref
}

// TestHTTPSListenersTerminateTLSByServerName translates a Gateway with HTTPS listeners on one
// port and runs the result in a real knit-proxy in gateway mode: the certificate is chosen by
// the client's server name (exact hostname, else the listener without one, whose Secret lives
// in another namespace a ReferenceGrant opens), h2 is negotiated by ALPN, TLS 1.1 is refused,
// routes attach by listener hostname, a renewed Secret is served after the next translation
// without a restart, and the proxy's configuration dump holds no private key.
func TestHTTPSListenersTerminateTLSByServerName(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "web saw "+r.Host+" over "+r.Header.Get("X-Forwarded-Proto"))
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	backendPort, _ := strconv.Atoi(u.Port())
	listenPort := freePort(t)

	shopCrt, shopKey := selfSigned(t, "shop", "shop.example.com")
	anyCrt, anyKey := selfSigned(t, "any", "*.example.org")
	gw := gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "edge", Generation: 3},
		Spec: gwv1.GatewaySpec{GatewayClassName: "knit", Listeners: []gwv1.Listener{
			httpsListener("shop", listenPort, "shop.example.com", secretRef("", "shop-cert")),
			httpsListener("any", listenPort, "", secretRef("certs", "shared")),
		}},
	}
	grant := gwv1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: "certs", Name: "gateways"}, Spec: gwv1.ReferenceGrantSpec{
		From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "Gateway", Namespace: "infra"}},
		To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
	}}
	route := httpRoute("infra", "web", 0, gatewayParent("infra", "edge", ""), gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backend("web", 80, 1)}})
	in := Inputs{
		TrustDomain:     "cluster.local",
		Services:        []corev1.Service{service("infra", "web", "10.96.0.10", port("http", 80))},
		EndpointSlices:  []discoveryv1.EndpointSlice{slice("infra", "web", "http", int32(backendPort), ep("127.0.0.1", "web-1", true))},
		HTTPRoutes:      []gwv1.HTTPRoute{route},
		Gateways:        []gwv1.Gateway{gw},
		ReferenceGrants: []gwv1.ReferenceGrant{grant},
		Secrets: []corev1.Secret{
			tlsSecret("infra", "shop-cert", corev1.SecretTypeTLS, shopCrt, shopKey),
			tlsSecret("certs", "shared", corev1.SecretTypeTLS, anyCrt, anyKey),
		},
	}
	if refs := ReferencedSecrets(in.Gateways); len(refs) != 2 || !refs[NewSecretRef("certs", "shared")] || !refs[NewSecretRef("infra", "shop-cert")] {
		t.Errorf("ReferencedSecrets = %v, want infra/shop-cert and certs/shared", refs)
	}
	m := Translate(in)
	verdicts := m.CertificateVerdicts[GatewayKey{"infra", "edge"}]
	if verdicts.Generation != 3 || len(verdicts.Listeners) != 2 ||
		verdicts.Listeners["shop"].Reason != gwv1.ListenerReasonResolvedRefs || verdicts.Listeners["any"].Reason != gwv1.ListenerReasonResolvedRefs {
		t.Errorf("verdicts %+v, want both listeners resolved for generation 3", verdicts)
	}

	p := dataplane.New(logr.Discard(), metrics.New())
	cfg := applyGateway(t, p, m, listenPort)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Drain(ctx)
	}()
	addr := cfg.Listeners[0].Address
	dump, _ := json.Marshal(p.CurrentConfig())
	if strings.Contains(string(dump), "PRIVATE KEY") || !strings.Contains(string(dump), "shop.example.com") {
		t.Errorf("the configuration dump shows a private key, or not the listener's server names: %s", dump)
	}

	get := func(serverName string, maxVersion uint16) (leafCN, proto string, code int, body string, err error) {
		tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MaxVersion: maxVersion}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/", nil)
		req.Host = serverName
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return "", "", 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.TLS.PeerCertificates[0].Subject.CommonName, resp.Proto, resp.StatusCode, string(b), nil
	}
	for _, tc := range []struct{ serverName, wantCN string }{
		{"shop.example.com", "shop"}, {"www.example.org", "any"}, {"", "any"},
	} {
		cn, proto, code, body, err := get(tc.serverName, 0)
		if err != nil || cn != tc.wantCN || proto != "HTTP/2.0" || code != http.StatusOK || !strings.HasPrefix(body, "web saw ") {
			t.Errorf("server name %q: certificate %q, %s %d %q, %v; want certificate %q, HTTP/2.0 200 from the backend", tc.serverName, cn, proto, code, body, err, tc.wantCN)
		}
	}
	if _, _, _, _, err := get("shop.example.com", tls.VersionTLS11); err == nil {
		t.Error("a TLS 1.1 client was served; want TLS 1.2 or later only")
	}

	// The Secret is renewed: the next translation carries the new certificate, which the same
	// running listener serves to new connections.
	newCrt, newKey := selfSigned(t, "shop-renewed", "shop.example.com")
	in.Secrets[0] = tlsSecret("infra", "shop-cert", corev1.SecretTypeTLS, newCrt, newKey)
	applyGateway(t, p, Translate(in), listenPort)
	if cn, _, code, _, err := get("shop.example.com", 0); err != nil || cn != "shop-renewed" || code != http.StatusOK {
		t.Errorf("after renewal: certificate %q, %d, %v; want shop-renewed, 200", cn, code, err)
	}
}

// applyGateway hands the Gateway edge's resources to p as its xDS client would, on loopback.
func applyGateway(t *testing.T, p *dataplane.Proxy, m *Model, listenPort int32) *config.Bootstrap {
	t.Helper()
	res, ok := m.GatewayResources(GatewayKey{"infra", "edge"})
	if !ok || len(res.Listeners) != 1 {
		t.Fatalf("gateway resources: ok=%v, %d listeners; want one (both HTTPS listeners share a port)", ok, len(res.Listeners))
	}
	view := proxyxds.NewResources()
	for _, c := range res.Clusters {
		view.Clusters[c.Name] = c
	}
	for _, a := range res.LoadAssignment {
		view.Endpoints[a.ClusterName] = a
	}
	for _, l := range res.Listeners {
		view.Listeners[l.Name] = l
	}
	for _, r := range res.Routes {
		view.Routes[r.Name] = r
	}
	base := &config.Bootstrap{Admin: config.Admin{Address: "127.0.0.1:0"}, Gateway: true}
	base.SetDefaults()
	cfg, err := proxyxds.TranslateGateway(base, view)
	if err != nil {
		t.Fatalf("the gateway proxy refuses the translation: %v", err)
	}
	cfg.Listeners[0].Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(listenPort))) // loopback only, in a test
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCertificateRefsThatDoNotResolve: each way a certificateRef can fail gives its listener
// the Gateway API reason, keeps it out of the proxy's listeners, and leaves the Gateway's other
// listeners served.
func TestCertificateRefsThatDoNotResolve(t *testing.T) {
	crt, key := selfSigned(t, "ok", "ok.example.com")
	wrongGroup := secretRef("", "ok")
	wrongGroup.Group = ptr.To(gwv1.Group("wrong.group.company.io"))
	wrongKind := secretRef("", "ok")
	wrongKind.Kind = ptr.To(gwv1.Kind("ConfigMap"))
	gw := gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "edge"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "knit", Listeners: []gwv1.Listener{
			httpsListener("ok", 443, "", secretRef("", "ok")),
			httpsListener("missing", 8443, "", secretRef("", "nope")),
			httpsListener("opaque", 8444, "", secretRef("", "opaque")),
			httpsListener("malformed", 8445, "", secretRef("", "malformed")),
			httpsListener("wrong-group", 8446, "", wrongGroup),
			httpsListener("wrong-kind", 8447, "", wrongKind),
			httpsListener("not-granted", 8448, "", secretRef("certs", "shared")),
			httpsListener("second-ref-missing", 8449, "", secretRef("", "ok"), secretRef("", "nope")),
		}},
	}
	m := Translate(Inputs{
		Gateways: []gwv1.Gateway{gw},
		Secrets: []corev1.Secret{
			tlsSecret("infra", "ok", corev1.SecretTypeTLS, crt, key),
			tlsSecret("infra", "opaque", corev1.SecretTypeOpaque, crt, key),
			tlsSecret("infra", "malformed", corev1.SecretTypeTLS, []byte("Hello world\n"), []byte("Hello world\n")),
			tlsSecret("certs", "shared", corev1.SecretTypeTLS, crt, key),
		},
	})
	want := map[string]gwv1.ListenerConditionReason{
		"ok": gwv1.ListenerReasonResolvedRefs, "missing": gwv1.ListenerReasonInvalidCertificateRef,
		"opaque": gwv1.ListenerReasonInvalidCertificateRef, "malformed": gwv1.ListenerReasonInvalidCertificateRef,
		"wrong-group": gwv1.ListenerReasonInvalidCertificateRef, "wrong-kind": gwv1.ListenerReasonInvalidCertificateRef,
		"not-granted": gwv1.ListenerReasonRefNotPermitted, "second-ref-missing": gwv1.ListenerReasonInvalidCertificateRef,
	}
	got := m.CertificateVerdicts[GatewayKey{"infra", "edge"}].Listeners
	for name, reason := range want {
		if got[name].Reason != reason || (reason != gwv1.ListenerReasonResolvedRefs && got[name].Message == "") {
			t.Errorf("listener %s: verdict %+v, want reason %s with a message", name, got[name], reason)
		}
	}
	if len(got) != len(want) {
		t.Errorf("verdicts for %d listeners, want %d: %+v", len(got), len(want), got)
	}
	res, _ := m.GatewayResources(GatewayKey{"infra", "edge"})
	if len(res.Listeners) != 1 || res.Listeners[0].Name != GatewayListenerName(443) {
		t.Errorf("proxy listeners %v, want only the one of port 443 (the listener whose certificate resolves)", res.Listeners)
	}
	// The operator reads the same verdicts back from the annotation.
	gw.Annotations = map[string]string{gateway.AnnotationCertificates: m.CertificateVerdicts[GatewayKey{"infra", "edge"}].Encode()}
	for _, l := range gateway.Listeners(&gw, gateway.CertificatesFromAnnotation(&gw)) {
		var reason gwv1.ListenerConditionReason = gwv1.ListenerReasonResolvedRefs
		if len(l.Problems) > 0 {
			reason = l.Problems[0].Reason
		}
		if reason != want[string(l.Name)] {
			t.Errorf("operator's view of listener %s: %s, want %s", l.Name, reason, want[string(l.Name)])
		}
	}
}
