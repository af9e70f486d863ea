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

// Package testenv starts the real components knit's integration tests run against: a
// kube-apiserver and etcd (controller-runtime's envtest, with the binaries hack/ builds) with
// knit's and cert-manager's CRDs installed, and the real cert-manager controller as a process
// against the same API server. Nothing here is a fake: the API server decides validation and
// defaulting, and cert-manager really signs certificates.
package testenv

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Env is a running test environment.
type Env struct {
	Config *rest.Config
	// LogDir holds the component logs (cert-manager's, the API server's audit of failures).
	LogDir string

	env         *envtest.Environment
	certManager *exec.Cmd
	cmDone      chan error
	cmBin       string
	out         io.Writer
	egress      *serviceEgress
}

// Options say which parts to start.
type Options struct {
	// CertManager starts the cert-manager controller and installs its CRDs.
	CertManager bool
	// Out receives one line per component started, with its version.
	Out io.Writer
	// MutatingWebhooks are installed pointing at a server the test runs on 127.0.0.1 (see
	// WebhookServing); the API server calls it as it would a webhook in a cluster.
	MutatingWebhooks []*admissionregistrationv1.MutatingWebhookConfiguration
	// ServiceCIDR is the API server's service-cluster-ip-range; empty keeps envtest's (a /24,
	// too small for benchmarks with a thousand Services).
	ServiceCIDR string
}

// RepoRoot is the root of the knit repository, found from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// GatewayAPICRDDir is the directory of Gateway API's standard-channel CRDs in the module cache,
// at the version go.mod requires (the module ships them under config/crd/standard).
func GatewayAPICRDDir() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir = RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding the sigs.k8s.io/gateway-api module (go mod download): %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard"), nil
}

// Start starts kube-apiserver + etcd from $KUBEBUILDER_ASSETS, installs the CRDs under
// config/crd/bases, Gateway API's standard CRDs (GatewayAPICRDDir), cert-manager's from
// $KNIT_CERT_MANAGER_DIR/crds, and, if asked, the
// cert-manager controller. Missing binaries are an error that says how to get them: a test that
// silently skipped here could never fail.
func Start(opts Options) (*Env, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver, etcd and cert-manager under bin/")
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%s missing from KUBEBUILDER_ASSETS=%s: run `make tools`: %w", b, assets, err)
		}
	}
	root := RepoRoot()
	logDir := os.Getenv("KNIT_TEST_LOGS")
	if logDir == "" {
		logDir = filepath.Join(root, "bin", "test-reports", "logs")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating log dir: %w", err)
	}

	gatewayAPI, err := GatewayAPICRDDir()
	if err != nil {
		return nil, err
	}
	crdPaths := []string{filepath.Join(root, "config", "crd", "bases"), gatewayAPI}
	cmDir := os.Getenv("KNIT_CERT_MANAGER_DIR")
	if opts.CertManager {
		if cmDir == "" {
			return nil, errors.New("KNIT_CERT_MANAGER_DIR is not set: run the tests with `make test`")
		}
		crdPaths = append(crdPaths, filepath.Join(cmDir, "crds"))
	}

	e := &Env{LogDir: logDir, env: &envtest.Environment{
		CRDDirectoryPaths:     crdPaths,
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			MutatingWebhooks: opts.MutatingWebhooks,
			LocalServingHost: "127.0.0.1",
		},
	}}
	egress, egressConfig, err := startServiceEgress()
	if err != nil {
		return nil, fmt.Errorf("starting the API server's egress proxy: %w", err)
	}
	e.egress = egress
	e.env.ControlPlane.GetAPIServer().Configure().Set("egress-selector-config-file", egressConfig)
	if opts.ServiceCIDR != "" {
		e.env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", opts.ServiceCIDR)
	}
	fmt.Fprintf(opts.Out, "testbed: starting %s and etcd %s\n",
		binaryVersion(filepath.Join(assets, "kube-apiserver"), "--version"),
		binaryVersion(filepath.Join(assets, "etcd"), "--version"))
	cfg, err := e.env.Start()
	if err != nil {
		egress.close()
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	e.Config = cfg
	fmt.Fprintf(opts.Out, "testbed: kube-apiserver serving at %s (etcd at %s)\n",
		cfg.Host, e.env.ControlPlane.Etcd.URL.String())

	if opts.CertManager {
		e.cmBin, e.out = filepath.Join(cmDir, "cert-manager-controller"), opts.Out
		if err := e.startCertManager(true); err != nil {
			_ = e.Stop()
			return nil, err
		}
	}
	return e, nil
}

// cmDefaultApprover is cert-manager's controller that approves every CertificateRequest.
const cmDefaultApprover = "certificaterequests-approver"

// startCertManager runs the real cert-manager controller against the test API server, as
// system:masters, without leader election, with or without its default approver. Its log goes
// to LogDir/cert-manager.log.
func (e *Env) startCertManager(defaultApprover bool) error {
	bin, out := e.cmBin, e.out
	controllers := "*"
	if !defaultApprover {
		controllers = "*,-" + cmDefaultApprover
	}
	kubeconfig, err := e.KubeConfig("cert-manager", "system:masters")
	if err != nil {
		return fmt.Errorf("cert-manager kubeconfig: %w", err)
	}
	kcPath := filepath.Join(e.LogDir, "cert-manager.kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing cert-manager kubeconfig: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(e.LogDir, "cert-manager.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("creating cert-manager log: %w", err)
	}
	cmd := exec.Command(bin,
		"--kubeconfig", kcPath,
		"--leader-elect=false",
		"--cluster-resource-namespace", "kube-system",
		"--controllers", controllers,
		"--metrics-listen-address", "0",
		"--v", "2",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting cert-manager controller %s: %w", bin, err)
	}
	e.certManager = cmd
	e.cmDone = make(chan error, 1)
	go func() { e.cmDone <- cmd.Wait(); _ = logFile.Close() }()
	fmt.Fprintf(out, "testbed: cert-manager controller %s started (controllers %s), pid %d, log %s\n",
		binaryVersion(bin, "--version"), controllers, cmd.Process.Pid, logFile.Name())

	// Fail fast if it dies on start (bad flags, bad kubeconfig) instead of timing out later.
	select {
	case err := <-e.cmDone:
		e.certManager = nil
		return fmt.Errorf("cert-manager controller exited at start (%v); see %s", err, logFile.Name())
	case <-time.After(2 * time.Second):
		return nil
	}
}

// WebhookServing is where a test serves the webhooks it installed: host, port and the
// directory of the serving certificate the API server trusts.
func (e *Env) WebhookServing() (host string, port int, certDir string) {
	o := e.env.WebhookInstallOptions
	return o.LocalServingHost, o.LocalServingPort, o.LocalServingCertDir
}

// RouteServices sets how the API server reaches Services (webhooks configured with a Service
// reference): each connection it opens to ClusterIP:port goes to dial. Without it, or when dial
// fails, the connection is refused, as for a Service without endpoints; it never leaves the
// machine.
func (e *Env) RouteServices(dial ServiceDialer) { e.egress.setDialer(dial) }

// KubeConfig returns a kubeconfig for a user of the test API server in the given groups, for
// processes that run beside the tests (the manager, kubectl, cert-manager).
func (e *Env) KubeConfig(name string, groups ...string) ([]byte, error) {
	user, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("creating API user %s: %w", name, err)
	}
	return user.KubeConfig()
}

// ServiceAccountSigningKey is the key the API server signs ServiceAccount tokens with, for a
// test that needs a genuine token the TokenRequest API will not issue (one already expired).
func (e *Env) ServiceAccountSigningKey() (crypto.Signer, error) {
	path := filepath.Join(e.env.ControlPlane.GetAPIServer().CertDir, "sa-signer.key")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the ServiceAccount signing key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s is not PEM", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, not a signing key", path, key)
	}
	return signer, nil
}

// InstallCertManagerCRDs installs cert-manager's CRDs into an environment started without
// them, as a person installing cert-manager after knit would.
func (e *Env) InstallCertManagerCRDs() error {
	dir := os.Getenv("KNIT_CERT_MANAGER_DIR")
	if dir == "" {
		return errors.New("KNIT_CERT_MANAGER_DIR is not set: run the tests with `make test`")
	}
	_, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(dir, "crds")}, ErrorIfPathMissing: true,
	})
	return err
}

// CertManagerRunning reports whether the cert-manager process is still alive.
func (e *Env) CertManagerRunning() bool {
	if e.certManager == nil {
		return false
	}
	select {
	case err := <-e.cmDone:
		e.cmDone <- err
		return false
	default:
		return true
	}
}

// RestartCertManager restarts the cert-manager controller with or without its default
// approver. Without it, a CertificateRequest is signed only once someone else approves it, as in
// a cluster running approver-policy: the set-up where knit's own approver has to prove itself.
func (e *Env) RestartCertManager(defaultApprover bool) error {
	if e.cmBin == "" {
		return errors.New("this environment was started without cert-manager")
	}
	e.stopCertManager()
	return e.startCertManager(defaultApprover)
}

func (e *Env) stopCertManager() {
	if e.certManager != nil && e.CertManagerRunning() {
		_ = e.certManager.Process.Signal(os.Interrupt)
		select {
		case <-e.cmDone:
		case <-time.After(10 * time.Second):
			_ = e.certManager.Process.Kill()
			<-e.cmDone
		}
	}
	e.certManager = nil
}

// Stop stops cert-manager, then the API server and etcd.
func (e *Env) Stop() error {
	var errs []error
	e.stopCertManager()
	if err := e.env.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stopping kube-apiserver and etcd: %w", err))
	}
	if e.egress != nil {
		e.egress.close()
	}
	return errors.Join(errs...)
}

// binaryVersion runs `bin args...` and returns its first output line, for the test log.
func binaryVersion(bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s (version unknown: %v)", filepath.Base(bin), err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return fmt.Sprintf("%s [%s]", filepath.Base(bin), line)
}
