// Command h2spec runs the h2spec HTTP/2 conformance suite against knit-proxy's
// h2c (cleartext, prior knowledge) and h2 (TLS, ALPN) listeners: the real data
// plane (proxy/dataplane) from a static config, with listeners left on their
// default protocol detection, in front of a real HTTP/1.1 upstream, all on
// 127.0.0.1. Failures listed in the known-failures file (with their reasons)
// are reported but accepted; any other failure, or a known one that now
// passes, fails the run. The combined report is written to -report.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/h2relay"
	"github.com/knit-mesh/knit/proxy/metrics"
)

func main() {
	bin := flag.String("h2spec", "", "path to the h2spec binary (hack/build-h2spec.sh prints it)")
	report := flag.String("report", "", "write the combined h2spec output here")
	known := flag.String("known", "", "known failures: lines \"<listener> <test id>  # reason\"")
	relay := flag.Bool("relay", false, "the HTTP/2 frame relay in front of an h2c upstream; without it, net/http's HTTP/2 server (KNIT_H2_RELAY=off) in front of an HTTP/1 upstream")
	flag.Parse()
	if *relay {
		os.Setenv(h2relay.EnvSwitch, "")
		upstreamHTTP2 = true
	} else {
		os.Setenv(h2relay.EnvSwitch, "off")
	}
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "usage: h2spec -h2spec PATH [-report FILE] [-known FILE]")
		os.Exit(2)
	}
	if err := run(*bin, *report, *known); err != nil {
		fmt.Fprintln(os.Stderr, "h2spec:", err)
		os.Exit(1)
	}
}

// upstreamHTTP2 puts an h2c upstream behind the listeners (with -relay: the relay's case).
var upstreamHTTP2 bool

func run(bin, reportPath, knownPath string) error {
	knownFailures, err := readKnown(knownPath)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "knit-h2spec-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	certFile, keyFile, err := writeCert(tmp)
	if err != nil {
		return err
	}
	// The upstream answers every request with a small body after reading the
	// request body, as h2spec's cases expect of a server.
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("knit h2spec upstream\n"))
	}))
	protocol := "http1"
	if upstreamHTTP2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		up.Config.Protocols = &p
		protocol = "http2"
	}
	up.Start()
	defer up.Close()
	// detectTimeout 3s: on a loaded machine h2spec's first bytes may come later than the default
	// 500 ms, and its connection would be taken for opaque TCP and closed (no case waits on it).
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listeners:
- {name: h2c, address: "127.0.0.1:0", routeConfig: main, detectTimeout: 3s}
- {name: h2, address: "127.0.0.1:0", routeConfig: main, detectTimeout: 3s, tls: {certFile: %q, keyFile: %q}}
routeConfigs:
- name: main
  virtualHosts:
  - name: all
    routes:
    - {name: all, clusters: [{name: upstream}]}
clusters:
- {name: upstream, protocol: %s, endpoints: [{address: %q}]}
`, certFile, keyFile, protocol, up.Listener.Addr().String())))
	if err != nil {
		return err
	}
	p := dataplane.New(logr.Discard(), metrics.New())
	if err := p.Apply(context.Background(), cfg); err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Drain(ctx)
	}()

	var out bytes.Buffer
	var summary []string
	var unexpected []string
	seenKnown := map[string]bool{}
	for _, l := range []struct {
		name string
		args []string
	}{{"h2c", nil}, {"h2", []string{"-t", "-k"}}} {
		_, port, _ := net.SplitHostPort(p.ListenerAddr(l.name).String())
		junit := filepath.Join(tmp, l.name+".xml")
		args := append([]string{"-h", "127.0.0.1", "-p", port, "-o", "5", "-j", junit}, l.args...)
		cmd := exec.Command(bin, args...)
		var text bytes.Buffer
		cmd.Stdout, cmd.Stderr = &text, &text
		runErr := cmd.Run() // h2spec exits 1 when any case fails; the JUnit report says which
		fmt.Fprintf(&out, "==== %s listener: h2spec -o 5 %s\n%s\n", l.name, strings.Join(l.args, " "), withoutTimings(text.String()))
		res, err := readJUnit(junit)
		if err != nil {
			return fmt.Errorf("%s: %w (h2spec: %v)\n%s", l.name, err, runErr, text.String())
		}
		var failedKnown int
		for _, id := range res.failed {
			key := l.name + " " + id
			if knownFailures[key] != "" {
				seenKnown[key] = true
				failedKnown++
				continue
			}
			unexpected = append(unexpected, key)
		}
		summary = append(summary, fmt.Sprintf("%s %d/%d passed (%d known failures, %d skipped)",
			l.name, res.passed, res.total, failedKnown, res.skipped))
	}
	for key := range knownFailures {
		if !seenKnown[key] {
			unexpected = append(unexpected, key+" (listed as a known failure but passes: remove it from the list)")
		}
	}
	slices.Sort(unexpected)
	line := "h2spec: " + strings.Join(summary, "; ")
	if len(unexpected) > 0 {
		line += fmt.Sprintf("; %d unexpected: %s", len(unexpected), strings.Join(unexpected, ", "))
	}
	fmt.Fprintln(&out, line)
	if reportPath != "" {
		if err := os.WriteFile(reportPath, out.Bytes(), 0o644); err != nil {
			return err
		}
	}
	fmt.Println(line)
	if len(unexpected) > 0 {
		return errors.New("HTTP/2 conformance failures (see the report)")
	}
	return nil
}

type results struct {
	total, passed, skipped int
	failed                 []string // test ids, e.g. "http2/5.1/1"
}

// readJUnit reads h2spec's JUnit report; a case's id is its suite's package
// plus its position ("http2/5.1/1"), as h2spec prints it.
func readJUnit(path string) (results, error) {
	var doc struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Name    string `xml:"name,attr"`
			Cases   []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return results{}, err
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return results{}, fmt.Errorf("parse %s: %w", path, err)
	}
	var r results
	for _, s := range doc.Suites {
		for i, c := range s.Cases {
			r.total++
			switch {
			case c.Skipped != nil:
				r.skipped++
			case c.Failure != nil || c.Error != nil:
				r.failed = append(r.failed, fmt.Sprintf("%s/%d", s.Package, i+1))
			default:
				r.passed++
			}
		}
	}
	return r, nil
}

func readKnown(path string) (map[string]string, error) {
	known := map[string]string{}
	if path == "" {
		return known, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(b), "\n") {
		entry, reason, _ := strings.Cut(line, "#")
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("%s:%d: a known failure needs its reason after #", path, i+1)
		}
		known[strings.Join(strings.Fields(entry), " ")] = strings.TrimSpace(reason)
	}
	return known, nil
}

func writeCert(dir string) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "knit h2spec"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// withoutTimings drops h2spec's "Finished in N seconds" line so that the committed report
// changes only when a result does (a run that only took longer leaves the clone clean).
func withoutTimings(report string) string {
	lines := strings.Split(report, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if strings.HasPrefix(l, "Finished in ") && strings.HasSuffix(l, " seconds") {
			continue
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "\n")
}
