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

// Command controlplane measures knit-controlplane's xDS server at scale: N simulated proxies
// (goroutines speaking real delta ADS over TLS on loopback, each with its own pod-bound token)
// against the real binary, reading a real API server that holds S Services with E endpoints in
// total. It reports the time from an EndpointSlice change to the last client having it
// (p50/p99 over rounds), the control plane's CPU seconds and its peak RSS. It is a benchmark,
// not a test: nothing here asserts a number.
package main

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
	"flag"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/knit-mesh/knit/controlplane/translate"
	proxyxds "github.com/knit-mesh/knit/proxy/xds"
	"github.com/knit-mesh/knit/test/testenv"
	"github.com/knit-mesh/knit/webhooks/injection"
)

var (
	clients    = flag.Int("clients", 100, "simulated proxies (N)")
	services   = flag.Int("services", 100, "Services (S)")
	endpoints  = flag.Int("endpoints", 1000, "endpoints over all Services (E)")
	rounds     = flag.Int("rounds", 30, "EndpointSlice changes measured")
	clientNS   = flag.Int("client-namespaces", 10, "namespaces the clients are spread over")
	binary     = flag.String("controlplane", "bin/knit-controlplane", "knit-controlplane binary")
	out        = flag.String("out", "bin/bench/controlplane.json", "result file (appended as one JSON line)")
	profile    = flag.String("profile", "", "directory for the control plane's pprof profiles: heap after the initial sync and at the end, CPU from the first round on")
	memLimit   = flag.String("memory-limit", "", "container memory limit to emulate, in bytes (KNIT_MEMORY_LIMIT, as the Deployment sets it; the control plane keeps its heap under 90 % of it)")
	profileFor = flag.Duration("profile-cpu", 30*time.Second, "length of the CPU profile (the run waits for it)")
)

const serverName = "knit-controlplane-bench.knit-system.svc"

// Result is one size's measurement.
type Result struct {
	Clients, Services, Endpoints int
	Rounds                       int
	P50ms, P99ms, Maxms          float64 // EndpointSlice update → last client has it
	InitialSyncSeconds           float64 // all clients connected → all have every cluster
	CPUSeconds                   float64 // control plane, whole run (start, initial sync, rounds)
	RoundsCPUSeconds             float64 // control plane, during the rounds only
	PeakRSSMB                    float64
	Reconnects                   int64 // streams the clients opened again after theirs broke
	MemoryLimit                  string
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-controlplane:", err)
		os.Exit(1)
	}
}

func run() error {
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.Start(testenv.Options{Out: os.Stderr, ServiceCIDR: "10.96.0.0/16"})
	if err != nil {
		return err
	}
	defer env.Stop() //nolint:errcheck
	cfg := env.Config
	cfg.QPS, cfg.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := populate(ctx, cs); err != nil {
		return err
	}
	pods, err := clientPods(ctx, cs)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: %d Services, %d endpoints, %d client pods with tokens in %s\n", *services, *endpoints, len(pods), time.Since(start).Round(time.Second))

	dir, err := os.MkdirTemp("", "knit-bench-cp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	roots, err := writeServingCert(dir)
	if err != nil {
		return err
	}
	kubeconfig, err := env.KubeConfig("knit-controlplane", "system:masters")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600); err != nil {
		return err
	}
	xdsAddr, health, webhook, debug := freePort(), freePort(), freePort(), freePort()
	args := []string{"--revision=bench", "--proxy-image=knit-proxy", "--tls-dir=" + dir,
		"--xds-addr=" + xdsAddr, "--health-addr=" + health, "--webhook-host=127.0.0.1", "--webhook-port=" + strings.Split(webhook, ":")[1],
		"--identity-addr="} // workload certificates are not what this measures
	prof := profiler{dir: *profile, addr: debug}
	if prof.dir != "" {
		if err := os.MkdirAll(prof.dir, 0o755); err != nil {
			return err
		}
		args = append(args, "--debug-addr="+debug)
	}
	cmd := exec.CommandContext(ctx, *binary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "kubeconfig"))
	if *memLimit != "" {
		cmd.Env = append(cmd.Env, "KNIT_MEMORY_LIMIT="+*memLimit)
	}
	logFile, err := os.Create(filepath.Join(env.LogDir, "bench-controlplane.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cancel(); _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	if err := waitListening(xdsAddr, time.Minute); err != nil {
		return fmt.Errorf("%w (see %s)", err, logFile.Name())
	}
	probes := make([]string, *services)
	for i := range probes {
		probes[i] = translate.ClusterName("bench", svcName(i), 80)
	}
	w := &watch{expect: &atomic.Pointer[round]{}}
	synced := make(chan struct{}, len(pods))
	connected := time.Now()
	for i, p := range pods {
		go w.client(ctx, i, xdsAddr, roots, p, synced)
	}
	for range pods {
		select {
		case <-synced:
		case <-time.After(10 * time.Minute):
			return fmt.Errorf("clients did not all receive every cluster within 10 minutes (see %s)", logFile.Name())
		}
	}
	initial := time.Since(connected)
	fmt.Fprintf(os.Stderr, "bench: %d clients have all %d clusters after %s\n", len(pods), *services, initial.Round(time.Millisecond))
	prof.heap("heap-after-sync.pprof")
	cpuProfiled := prof.cpu("cpu-rounds.pprof", *profileFor)

	cpuBefore, err := cpuSeconds(cmd.Process.Pid)
	if err != nil {
		return err
	}
	var lat []float64
	for r := range *rounds {
		svc := r % *services
		marker := fmt.Sprintf("10.255.%d.%d", r/250, r%250+1)
		rd := &round{cluster: probes[svc], marker: marker, left: int64(len(pods)), done: make(chan struct{})}
		w.expect.Store(rd)
		t0 := time.Now()
		if err := addEndpoint(ctx, cs, svc, marker); err != nil {
			return err
		}
		select {
		case <-rd.done:
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("round %d: %d clients never saw the change", r, atomic.LoadInt64(&rd.left))
		}
		lat = append(lat, float64(time.Duration(rd.last.Load()-t0.UnixNano()))/float64(time.Millisecond))
	}
	prof.heap("heap-end.pprof")
	<-cpuProfiled
	cpuAfter, err := cpuSeconds(cmd.Process.Pid)
	if err != nil {
		return err
	}
	rss, err := peakRSSMB(cmd.Process.Pid)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	res := Result{
		Clients: len(pods), Services: *services, Endpoints: *endpoints, Rounds: *rounds,
		P50ms: pct(lat, 50), P99ms: pct(lat, 99), Maxms: lat[len(lat)-1],
		InitialSyncSeconds: initial.Seconds(), CPUSeconds: cpuAfter, RoundsCPUSeconds: cpuAfter - cpuBefore, PeakRSSMB: rss,
		Reconnects: w.reconnects.Load(), MemoryLimit: *memLimit,
	}
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	limit := "none"
	if *memLimit != "" {
		limit = *memLimit
	}
	fmt.Printf("| %d | %d | %d | %.0f | %.0f | %.1f | %.1f | %.1f | %.0f | %s | %d |\n", res.Clients, res.Services, res.Endpoints,
		res.P50ms, res.P99ms, res.InitialSyncSeconds, res.CPUSeconds, res.RoundsCPUSeconds, res.PeakRSSMB, limit, res.Reconnects)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	return err
}

func pct(sorted []float64, p int) float64 {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func svcName(i int) string { return fmt.Sprintf("svc-%04d", i) }

// parallel runs n jobs with a bounded number in flight, returning the first error.
func parallel(n int, job func(int) error) error {
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := job(i); err != nil {
				first.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return *e
	}
	return nil
}

// populate creates S Services in namespace bench, each with one EndpointSlice; the E endpoints
// are spread evenly.
func populate(ctx context.Context, cs kubernetes.Interface) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	per := max(1, *endpoints / *services)
	return parallel(*services, func(i int) error {
		_, err := cs.CoreV1().Services("bench").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svcName(i)},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: svcName(i), Labels: map[string]string{discoveryv1.LabelServiceName: svcName(i)}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for j := range per {
			n := i*per + j
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 1+n/65536, (n/256)%256, n%256)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			})
		}
		_, err = cs.DiscoveryV1().EndpointSlices("bench").Create(ctx, s, metav1.CreateOptions{})
		return err
	})
}

func addEndpoint(ctx context.Context, cs kubernetes.Interface, svc int, ip string) error {
	s, err := cs.DiscoveryV1().EndpointSlices("bench").Get(ctx, svcName(svc), metav1.GetOptions{})
	if err != nil {
		return err
	}
	s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	_, err = cs.DiscoveryV1().EndpointSlices("bench").Update(ctx, s, metav1.UpdateOptions{})
	return err
}

type clientPod struct {
	node, token string
}

// clientPods creates N pods (they stay Pending: there is no kubelet) and a knit.dev token bound
// to each, as the injector's projected volume would hold.
func clientPods(ctx context.Context, cs kubernetes.Interface) ([]clientPod, error) {
	for i := range *clientNS {
		ns := fmt.Sprintf("bench-c%d", i)
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	pods := make([]clientPod, *clients)
	err := parallel(*clients, func(i int) error {
		ns := fmt.Sprintf("bench-c%d", i%*clientNS)
		pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("client-%04d", i), Annotations: map[string]string{injection.AnnotationInjectedRevision: "bench"}},
			Spec: corev1.PodSpec{
				ServiceAccountName: "app",
				InitContainers:     []corev1.Container{{Name: injection.ProxyContainerName, Image: "knit-proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
				Containers:         []corev1.Container{{Name: "app", Image: "app"}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
			Audiences:         []string{injection.TokenAudience},
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		pods[i] = clientPod{node: ns + "/" + pod.Name, token: tr.Status.Token}
		return nil
	})
	return pods, err
}

// round is one measured change: the clients report when they have the marker endpoint.
type round struct {
	cluster, marker string
	left            int64
	last            atomic.Int64 // UnixNano of the last client to see it
	done            chan struct{}
	seen            sync.Map // client index → true
}

type watch struct {
	expect     *atomic.Pointer[round]
	reconnects atomic.Int64
}

// client is one simulated proxy: it subscribes to the four types with wildcard, ACKs every
// response, counts clusters until it has all, and reports the marker of the current round. As a
// proxy does, it reconnects when its stream breaks (a TLS handshake can time out on a loaded
// machine); the reconnections are counted in the result.
func (w *watch) client(ctx context.Context, i int, addr string, roots *x509.CertPool, p clientPod, synced chan<- struct{}) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: serverName})),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "client", i, err)
		return
	}
	defer conn.Close()
	s := &clientState{have: map[string]bool{}}
	delay := proxyxds.DefaultBackoffBase
	for {
		err := w.stream(ctx, i, conn, p, s, synced)
		if ctx.Err() != nil {
			return
		}
		w.reconnects.Add(1)
		fmt.Fprintln(os.Stderr, "client", i, "reconnects after:", err)
		if s.received {
			delay, s.received = proxyxds.DefaultBackoffBase, false
		}
		// knit-proxy's reconnect delay: jittered, doubling up to its maximum.
		time.Sleep(delay/2 + mrand.N(delay/2))
		delay = min(2*delay, proxyxds.DefaultBackoffMax)
	}
}

type clientState struct {
	have      map[string]bool
	announced bool
	received  bool // a response came on the current stream
}

func (w *watch) stream(ctx context.Context, i int, conn *grpc.ClientConn, p clientPod, s *clientState, synced chan<- struct{}) error {
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.token))
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: p.node}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
			return err
		}
		node = nil
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		s.received = true
		if resp.GetTypeUrl() == resourcev3.EndpointType {
			rd := w.expect.Load()
			for _, r := range resp.GetResources() {
				s.have[r.GetName()] = true
				if rd != nil && r.GetName() == rd.cluster && hasAddress(r, rd.marker) {
					if _, dup := rd.seen.LoadOrStore(i, true); !dup {
						for {
							old := rd.last.Load()
							if now <= old || rd.last.CompareAndSwap(old, now) {
								break
							}
						}
						if atomic.AddInt64(&rd.left, -1) == 0 {
							close(rd.done)
						}
					}
				}
			}
			if !s.announced && len(s.have) >= *services {
				s.announced = true
				synced <- struct{}{}
			}
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
	}
}

func hasAddress(r *discoveryv3.Resource, ip string) bool {
	var cla endpointv3.ClusterLoadAssignment
	if err := r.GetResource().UnmarshalTo(&cla); err != nil {
		return false
	}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			if e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress() == ip {
				return true
			}
		}
	}
	return false
}

// profiler fetches the control plane's profiles from its --debug-addr; with no directory it
// does nothing. Failures are reported, not fatal: the measurement stands without them.
type profiler struct{ dir, addr string }

// cpu starts a CPU profile of the given length; the channel closes once it is written.
func (p profiler) cpu(name string, length time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if p.dir == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		p.fetch(context.Background(), fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(length.Seconds())), name)
	}()
	return done
}

func (p profiler) heap(name string) {
	if p.dir != "" {
		p.fetch(context.Background(), "/debug/pprof/heap?gc=1", name)
	}
}

func (p profiler) fetch(ctx context.Context, path, name string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+path, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			defer resp.Body.Close()
			var body []byte
			if body, err = io.ReadAll(resp.Body); err == nil {
				err = os.WriteFile(filepath.Join(p.dir, name), body, 0o644)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: profile %s: %v\n", name, err)
	}
}

// waitListening waits for the control plane to listen: it serves xDS once its cache synced.
func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("knit-controlplane does not listen on %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeServingCert(dir string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: serverName}, DNSNames: []string{serverName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, data := range map[string][]byte{
		"tls.crt": certPEM, "ca.crt": certPEM,
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool, nil
}

// cpuSeconds is a process's user+system CPU time so far (/proc/<pid>/stat, clock ticks of 1/100 s).
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return (utime + stime) / 100, nil
}

// peakRSSMB is a process's peak resident set (VmHWM).
func peakRSSMB(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
