package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knit-mesh/knit/proxy/identity"
	"github.com/knit-mesh/knit/proxy/identity/identitytest"
	"github.com/knit-mesh/knit/proxy/netnstest"
	"github.com/knit-mesh/knit/proxy/xds/xdstest"
)

// TestStrictPodInNetworkNamespaceAnswersProbesAndRefusesPlaintext runs the real binary with
// real capture rules, as the injector sets it up under mtls.mode STRICT, with an identity
// service outside the pod: the kubelet-style probe through the admin port (which capture leaves
// alone) passes, a plaintext client of the app's port is refused, and a mesh peer's mutual TLS
// reaches the app with the peer's SPIFFE ID.
func TestStrictPodInNetworkNamespaceAnswersProbesAndRefusesPlaintext(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates network namespaces, writes nftables rules, runs the proxy as UID 1337)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	bin := buildProxy(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(bin)), 0o755)
	pod, cli := newNs(t), newNs(t)
	if err := netnstest.Veth(pod.Netns, cli.Netns, "epod", "10.214.1.2/24", "ecli", "10.214.1.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := pod.Do(0, func() error {
		out, err := exec.Command(bin, "init", "--proxy-uid=1337", "--inbound-port=15006", "--outbound-port=15001",
			"--exclude-inbound-ports=15020").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The control plane's identity service, outside the pod.
	var caListener net.Listener
	if err := cli.Do(0, func() (err error) { caListener, err = net.Listen("tcp4", "10.214.1.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	ca := identitytest.StartOn(t, caListener, time.Hour, xdstest.Register)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	token, bundle := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	os.WriteFile(token, []byte(identitytest.Token), 0o644)
	os.WriteFile(bundle, []byte(identitytest.PEM(ca.Root)), 0o644)

	// The app tells who called it.
	var ln net.Listener
	if err := pod.Do(0, func() (err error) { ln, err = net.Listen("tcp4", ":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app peer=%s", r.Header.Get("X-Knit-Peer-Identity"))
	})}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })

	const podID = "spiffe://cluster.local/ns/shop/sa/web"
	cmd := exec.Command(bin, "run", "--sidecar", "--admin-port=15020", "--inbound-port=15006", "--outbound-port=15001")
	cmd.Env = append(os.Environ(), "POD_NAME=web-0", "POD_NAMESPACE=shop", "POD_IP=10.214.1.2", "KNIT_ACCESS_LOG=Off",
		"KNIT_IDENTITY="+podID, "KNIT_CONTROL_PLANE="+ca.Addr, "KNIT_IDENTITY_ADDRESS="+ca.Addr,
		"KNIT_TOKEN_FILE="+token, "KNIT_TRUST_BUNDLE="+bundle, "KNIT_MTLS_MODE=STRICT",
		`KNIT_APP_PROBES={"/app-health/app/readiness":{"httpGet":{"path":"/","port":8080}}}`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1337, Gid: 1337}}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := pod.Do(0, cmd.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	kubelet := cli.client()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := kubelet.Get("http://10.214.1.2:15020/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar never ready: %v\n%s", err, logs.String())
		}
	}
	if code, b := body(t, kubelet, "http://10.214.1.2:15020/app-health/app/readiness"); code != 200 {
		t.Fatalf("the kubelet's probe under STRICT: %d %s\n%s", code, b, logs.String())
	}
	if resp, err := cli.client().Get("http://10.214.1.2:8080/plain"); err == nil {
		resp.Body.Close()
		t.Fatalf("plaintext to the app's port was served under STRICT: %d", resp.StatusCode)
	}

	// A mesh peer: a certificate for cart from the same root, offering knit's ALPN.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cartURL, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/cart")
	cert, err := identitytest.Sign(ca.Root, ca.RootKey, &key.PublicKey, &x509.Certificate{URIs: []*url.URL{cartURL},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	peer := cli.client()
	peer.Transport.(*http.Transport).TLSClientConfig = &tls.Config{
		NextProtos: []string{identity.ALPN}, Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}},
		// The server is named by its SPIFFE ID, not a host name: check that instead.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil || len(c.URIs) != 1 || c.URIs[0].String() != podID {
				return fmt.Errorf("server is not %s", podID)
			}
			return nil
		},
	}
	if code, b := body(t, peer, "https://10.214.1.2:8080/meshed"); code != 200 || b != "app peer="+cartURL.String() {
		t.Fatalf("mutual TLS under STRICT: %d %q\n%s", code, b, logs.String())
	}
	_, metrics := body(t, kubelet, "http://10.214.1.2:15020/metrics")
	for _, want := range []string{
		`knit_proxy_inbound_connections_total{peer_identity="",security="refused"} 1`,
		`knit_proxy_inbound_connections_total{peer_identity="spiffe://cluster.local/ns/shop/sa/cart",security="mtls"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s\n%s", want, grep(metrics, "knit_proxy_inbound"))
		}
	}
	if !strings.Contains(logs.String(), "refused a plaintext connection: mtls.mode is STRICT") {
		t.Errorf("no log line for the refused connection:\n%s", logs.String())
	}
}
