// Command bench measures knit-proxy beside direct traffic, nginx and
// haproxy on loopback in one run, and prints ratios against direct.
// It is a benchmark, not a test: nothing here asserts a number.
//
// Layout (2 cores): the load generator is pinned to CPU 0; the upstream and
// the proxy under test share CPU 1, as a sidecar shares its pod's CPU with
// the application, so a proxy's CPU cost shows up as lost throughput.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

var (
	fortio   = flag.String("fortio", "", "path to fortio v1.68.2")
	proxyBin = flag.String("knit-proxy", "bin/knit-proxy", "path to the knit-proxy binary")
	baseBin  = flag.String("baseline-proxy", "", "path to an earlier knit-proxy binary, measured as target knit-base in the same interleaved rounds")
	outDir   = flag.String("out", "bin/bench", "directory for configs, logs and result.json")
	duration = flag.Duration("duration", 3*time.Second, "length of each measured run")
	rounds   = flag.Int("rounds", 3, "rounds; each round runs every target once per scenario, interleaved, and the median is reported")
	genCPU   = flag.String("loadgen-cpu", "0", "CPU list for the load generator")
	srvCPU   = flag.String("server-cpu", "1", "CPU list for the upstream and the proxy")
	only     = flag.String("only", "", "comma-separated targets to run (direct,knit,nginx,haproxy); empty = all")
	noTLS    = flag.Bool("no-tls", false, "skip the TLS client→proxy runs")
	profile  = flag.Bool("profile", false, "take a 5s CPU profile of knit-proxy during its max-throughput run")
	twoHop   = flag.String("two-hop", "", "path to test/bench/twohop: adds the mesh phase (client → sidecar → sidecar → upstream), plaintext and mutual TLS between the sidecars, beside nginx and haproxy as two TLS hops")
	loadBin  = flag.String("load", "", "path to test/bench/load (h2c, gRPC and TCP shapes and their upstreams)")
	shapes   = flag.String("shapes", "", "comma-separated phases to run: get64, tls, post1k, resp64k, chunked, h2c, grpc-unary, grpc-stream, tcp, mesh; empty = all")

	shapeDuration = flag.Duration("shape-duration", 2*time.Second, "length of each run in the body, h2c, gRPC and TCP shapes")
)

// Run is one load run's result.
type Run struct {
	QPS         float64            `json:"qps"`
	Requests    int64              `json:"requests"`
	Errors      int64              `json:"errors"`
	Percentiles map[string]float64 `json:"latency_ms"`
	CPUSeconds  float64            `json:"proxy_cpu_seconds"`
	CPUPer10k   float64            `json:"proxy_cpu_seconds_per_10k_requests"`
}

// Target is everything measured for one way of reaching the upstream.
type Target struct {
	Name         string    `json:"name"`
	MaxQPS       Run       `json:"max_throughput_c64"`
	At1000       Run       `json:"fixed_1000_rps"`
	At5000       Run       `json:"fixed_5000_rps"`
	PeakRSSMB    float64   `json:"proxy_peak_rss_mb_after_5000_rps"`
	Rounds       int       `json:"rounds"`
	MaxQPSRounds []float64 `json:"max_throughput_each_round"`
}

// Result is the JSON file.
type Result struct {
	When     time.Time `json:"when"`
	Duration string    `json:"run_duration"`
	Layout   string    `json:"layout"`
	Plain    []Target  `json:"plaintext"`
	TLS      []Target  `json:"tls_client_to_proxy"`
	// TwoHop: client → knit sidecar → knit sidecar → upstream, the hop between the sidecars in
	// plaintext (knit-2hop) or mutual TLS (knit-2hop-mtls); both sidecars in one process.
	TwoHop []Target `json:"two_hop,omitempty"`
	// Shapes: bodies, h2c, gRPC and TCP (shapes.go).
	Shapes []ShapeResult      `json:"shapes,omitempty"`
	Ratios map[string]float64 `json:"ratios"`
}

func main() {
	flag.Parse()
	must(os.MkdirAll(*outDir, 0o755))
	abs, _ := filepath.Abs(*outDir)
	*outDir = abs
	cert, key, pemBundle := makeCert()

	upPort, upTLSPort, upH2CPort := freePort(), freePort(), freePort()
	upstream := startNginxUpstream(upPort, upTLSPort, upH2CPort, cert, key)
	defer upstream.stop()
	waitPort(upPort)
	up := upstreams{http: upPort, h2c: upH2CPort, cert: cert, key: key, pemBundle: pemBundle}
	if *loadBin != "" {
		bin, _ := filepath.Abs(*loadBin)
		*loadBin = bin
		if shapeSelected("grpc-unary") || shapeSelected("grpc-stream") {
			up.grpc = freePort()
			g := start("grpc-upstream", []string{bin, "-mode", "grpc-server", "-addr", fmt.Sprintf("127.0.0.1:%d", up.grpc)})
			defer g.stop()
			waitPort(up.grpc)
		}
		if shapeSelected("tcp") {
			up.sink = freePort()
			s := start("tcp-sink", []string{bin, "-mode", "tcp-sink", "-addr", fmt.Sprintf("127.0.0.1:%d", up.sink)})
			defer s.stop()
			waitPort(up.sink)
		}
	}

	res := Result{When: time.Now().UTC(), Duration: duration.String(),
		Layout: fmt.Sprintf("load generator on CPU %s; upstream (nginx, 1 worker) and proxy under test on CPU %s", *genCPU, *srvCPU)}
	for _, tlsMode := range []bool{false, true} {
		if tlsMode && *noTLS || !shapeSelected(map[bool]string{false: "get64", true: "tls"}[tlsMode]) {
			continue
		}
		var names []string
		for _, name := range []string{"direct", "knit", "knit-base", "nginx", "haproxy"} {
			if name == "knit-base" && *baseBin == "" {
				continue
			}
			if *only == "" || strings.Contains(","+*only+",", ","+name+",") {
				names = append(names, name)
			}
		}
		fmt.Fprintf(os.Stderr, "== tls=%v: %s, %d interleaved rounds\n", tlsMode, strings.Join(names, ", "), *rounds)
		targets := measureAll(names, tlsMode, upPort, upTLSPort, cert, key, pemBundle)
		if tlsMode {
			res.TLS = targets
		} else {
			res.Plain = targets
		}
	}
	if *twoHop != "" && shapeSelected("mesh") {
		var names []string
		for _, name := range []string{"direct", "knit-2hop", "knit-2hop-mtls", "nginx-2tls", "haproxy-2tls"} {
			if *only == "" || strings.Contains(","+*only+",", ","+name+",") {
				names = append(names, name)
			}
		}
		fmt.Fprintf(os.Stderr, "== two hops: %s, %d interleaved rounds\n", strings.Join(names, ", "), *rounds)
		res.TwoHop = measureAll(names, false, upPort, upTLSPort, cert, key, pemBundle)
	}
	if *loadBin != "" {
		res.Shapes = measureShapes(up)
	}
	res.Ratios = ratios(res)
	shapeRatios(res.Shapes, res.Ratios)
	printTable(res)
	printShapes(res.Shapes)
	b, _ := json.MarshalIndent(res, "", "  ")
	must(os.WriteFile(filepath.Join(*outDir, "result.json"), b, 0o644))
	fmt.Printf("\nJSON result: %s\n", filepath.Join(*outDir, "result.json"))
}

// server is one way to reach the upstream, started before the rounds begin.
type server struct {
	name string
	url  string
	p    *proc
}

func startServer(name string, tlsMode bool, upPort, upTLSPort int, cert, key, pemBundle string) server {
	scheme := "http"
	if tlsMode {
		scheme = "https"
	}
	port := freePort()
	var p *proc
	switch name {
	case "direct":
		port = upPort
		if tlsMode {
			port = upTLSPort
		}
	case "knit":
		p = startKnit(*proxyBin, port, upPort, tlsMode, cert, key)
	case "knit-base":
		p = startKnit(*baseBin, port, upPort, tlsMode, cert, key)
	case "nginx":
		p = startNginxProxy(port, upPort, tlsMode, cert, key)
	case "haproxy":
		p = startHAProxy(port, upPort, tlsMode, pemBundle)
	case "knit-2hop", "knit-2hop-mtls":
		bin, _ := filepath.Abs(*twoHop)
		p = start(name, []string{bin, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-upstream", fmt.Sprintf("127.0.0.1:%d", upPort),
			"-mtls=" + strconv.FormatBool(name == "knit-2hop-mtls")})
	case "nginx-2tls", "haproxy-2tls":
		p = startMeshPeer(name, port, upPort, cert, key, pemBundle)
	}
	waitPort(port)
	return server{name: name, url: fmt.Sprintf("%s://127.0.0.1:%d/", scheme, port), p: p}
}

// measureAll interleaves the targets round by round, so that a change in
// background load on a shared machine hits all of them alike, and reports
// the median of the rounds.
func measureAll(names []string, tlsMode bool, upPort, upTLSPort int, cert, key, pemBundle string) []Target {
	var servers []server
	for _, n := range names {
		s := startServer(n, tlsMode, upPort, upTLSPort, cert, key, pemBundle)
		defer s.p.stop()
		servers = append(servers, s)
	}
	type runs struct{ max, at1k, at5k []Run }
	acc := make([]runs, len(servers))
	rss := make([]float64, len(servers))
	for i, s := range servers {
		fmt.Fprintf(os.Stderr, "   warm up %s\n", s.name)
		load(s.url, 5000, 32, 2*time.Second, s.p, "") // pools and caches; peak RSS below is then "at 5000 req/s"
		_ = i
	}
	for r := 0; r < *rounds; r++ {
		fmt.Fprintf(os.Stderr, "   round %d/%d\n", r+1, *rounds)
		for i, s := range servers {
			acc[i].at1k = append(acc[i].at1k, load(s.url, 1000, 16, *duration, s.p, ""))
		}
		for i, s := range servers {
			acc[i].at5k = append(acc[i].at5k, load(s.url, 5000, 32, *duration, s.p, ""))
			if r == 0 && s.p != nil {
				rss[i] = s.p.peakRSSMB()
			}
		}
		for i, s := range servers {
			prof := ""
			if *profile && s.name == "knit" && !tlsMode && r == *rounds-1 {
				prof = filepath.Join(*outDir, "knit-cpu.pprof")
			}
			acc[i].max = append(acc[i].max, load(s.url, 0, 64, *duration, s.p, prof))
		}
	}
	out := make([]Target, len(servers))
	for i, s := range servers {
		out[i] = Target{Name: s.name, MaxQPS: median(acc[i].max), At1000: median(acc[i].at1k),
			At5000: median(acc[i].at5k), PeakRSSMB: rss[i], Rounds: len(acc[i].max)}
		for _, r := range acc[i].max {
			out[i].MaxQPSRounds = append(out[i].MaxQPSRounds, r.QPS)
		}
	}
	return out
}

// median takes each number's median across runs separately.
func median(rs []Run) Run {
	med := func(get func(Run) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		sort.Float64s(v)
		if len(v) == 0 {
			return 0
		}
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	out := Run{Percentiles: map[string]float64{}}
	out.QPS = med(func(r Run) float64 { return r.QPS })
	out.Requests = int64(med(func(r Run) float64 { return float64(r.Requests) }))
	out.CPUSeconds = med(func(r Run) float64 { return r.CPUSeconds })
	out.CPUPer10k = med(func(r Run) float64 { return r.CPUPer10k })
	for _, r := range rs {
		out.Errors += r.Errors
	}
	for k := range rs[0].Percentiles {
		out.Percentiles[k] = med(func(r Run) float64 { return r.Percentiles[k] })
	}
	return out
}

// load runs fortio; qps 0 means as fast as possible. Fortio's default
// catch-up mode keeps the offered rate constant when responses are slow,
// so latency is not understated (coordinated omission).
func load(url string, qps, conns int, d time.Duration, p *proc, profile string, extra ...string) Run {
	out := filepath.Join(*outDir, "fortio.json")
	args := []string{"-c", *genCPU, *fortio, "load", "-quiet", "-json", out, "-qps", strconv.Itoa(qps),
		"-c", strconv.Itoa(conns), "-t", d.String(), "-p", "50,90,99,99.9", "-uniform", "-timeout", "10s"}
	if strings.HasPrefix(url, "https") {
		args = append(args, "-k")
	}
	args = append(append(args, extra...), url)
	cpu0 := p.cpuSeconds()
	var profCmd *exec.Cmd
	if profile != "" {
		profCmd = exec.Command("curl", "-s", "-o", profile, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=5", p.adminPort))
		profCmd.Start()
	}
	cmd := exec.Command("taskset", args...)
	logf, err := os.OpenFile(filepath.Join(*outDir, "fortio.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(err)
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		must(fmt.Errorf("fortio (see %s): %w", logf.Name(), err))
	}
	if profCmd != nil {
		profCmd.Wait()
	}
	cpu := p.cpuSeconds() - cpu0
	var fr struct {
		ActualQPS         float64
		ActualDuration    int64
		RetCodes          map[string]int64
		DurationHistogram struct {
			Count       int64
			Percentiles []struct{ Percentile, Value float64 }
		}
	}
	b, err := os.ReadFile(out)
	must(err)
	must(json.Unmarshal(b, &fr))
	r := Run{QPS: fr.ActualQPS, Requests: fr.DurationHistogram.Count, Percentiles: map[string]float64{}, CPUSeconds: cpu}
	for code, n := range fr.RetCodes {
		if code != "200" {
			r.Errors += n
		}
	}
	for _, pc := range fr.DurationHistogram.Percentiles {
		r.Percentiles["p"+strconv.FormatFloat(pc.Percentile, 'f', -1, 64)] = pc.Value * 1000
	}
	if r.Requests > 0 {
		r.CPUPer10k = cpu / float64(r.Requests) * 10000
	}
	fmt.Fprintf(os.Stderr, "   qps=%d c=%d -> %.0f req/s, p50 %.3fms p99 %.3fms, errors %d, cpu %.2fs\n",
		qps, conns, r.QPS, r.Percentiles["p50"], r.Percentiles["p99"], r.Errors, cpu)
	return r
}

func ratios(res Result) map[string]float64 {
	out := map[string]float64{}
	for _, set := range []struct {
		prefix  string
		targets []Target
	}{{"plain", res.Plain}, {"tls", res.TLS}, {"twohop", res.TwoHop}} {
		by := map[string]Target{}
		for _, t := range set.targets {
			by[t.Name] = t
		}
		d, ok := by["direct"]
		if !ok && set.prefix != "twohop" {
			continue
		}
		for _, t := range set.targets {
			if t.Name == "direct" || !ok {
				continue
			}
			out[set.prefix+"."+t.Name+".throughput_vs_direct"] = t.MaxQPS.QPS / d.MaxQPS.QPS
			out[set.prefix+"."+t.Name+".added_p99_ms_at_1000"] = t.At1000.Percentiles["p99"] - d.At1000.Percentiles["p99"]
			if set.prefix == "twohop" {
				out[set.prefix+"."+t.Name+".added_p50_ms_at_1000"] = t.At1000.Percentiles["p50"] - d.At1000.Percentiles["p50"]
			}
		}
		if b, ok := by["knit-base"]; ok && b.MaxQPS.QPS > 0 {
			k := by["knit"]
			out[set.prefix+".knit_vs_baseline.throughput"] = k.MaxQPS.QPS / b.MaxQPS.QPS
			if b.At5000.CPUPer10k > 0 {
				out[set.prefix+".knit_vs_baseline.cpu_per_request"] = k.At5000.CPUPer10k / b.At5000.CPUPer10k
			}
		}
		if p, m := by["knit-2hop"], by["knit-2hop-mtls"]; p.Name != "" && m.Name != "" {
			// What mutual TLS between the sidecars adds to the same two hops in plaintext
			// (targets: added p99@1k ≤ 1 ms, CPU/request ≤ 1.5×).
			out["twohop.mtls_added_p99_ms_at_1000"] = m.At1000.Percentiles["p99"] - p.At1000.Percentiles["p99"]
			if p.At1000.CPUPer10k > 0 {
				out["twohop.mtls_vs_plaintext.cpu_per_request_at_1000"] = m.At1000.CPUPer10k / p.At1000.CPUPer10k
			}
			if p.At5000.CPUPer10k > 0 {
				out["twohop.mtls_vs_plaintext.cpu_per_request_at_5000"] = m.At5000.CPUPer10k / p.At5000.CPUPer10k
			}
			if p.MaxQPS.QPS > 0 {
				out["twohop.mtls_vs_plaintext.throughput"] = m.MaxQPS.QPS / p.MaxQPS.QPS
			}
		}
		if m := by["knit-2hop-mtls"]; m.Name != "" {
			// The mesh path against the same two TLS hops in nginx and haproxy (issue target:
			// CPU/request ≤ 1.3× haproxy's).
			for _, peer := range []string{"haproxy-2tls", "nginx-2tls"} {
				p := by[peer]
				if p.Name == "" {
					continue
				}
				name := "twohop.knit_mtls_vs_" + strings.TrimSuffix(peer, "-2tls")
				if p.At1000.CPUPer10k > 0 {
					out[name+".cpu_per_request_at_1000"] = m.At1000.CPUPer10k / p.At1000.CPUPer10k
				}
				if p.At5000.CPUPer10k > 0 {
					out[name+".cpu_per_request_at_5000"] = m.At5000.CPUPer10k / p.At5000.CPUPer10k
				}
				if p.MaxQPS.QPS > 0 {
					out[name+".throughput"] = m.MaxQPS.QPS / p.MaxQPS.QPS
				}
			}
		}
		k, h := by["knit"], by["haproxy"]
		if k.Name != "" && h.Name != "" {
			out[set.prefix+".knit_vs_haproxy.throughput"] = k.MaxQPS.QPS / h.MaxQPS.QPS
			ka := k.At1000.Percentiles["p99"] - d.At1000.Percentiles["p99"]
			ha := h.At1000.Percentiles["p99"] - d.At1000.Percentiles["p99"]
			if ha > 0 {
				out[set.prefix+".knit_vs_haproxy.added_p99_at_1000"] = ka / ha
			}
			if h.At5000.CPUPer10k > 0 {
				out[set.prefix+".knit_vs_haproxy.cpu_per_request"] = k.At5000.CPUPer10k / h.At5000.CPUPer10k
			}
		}
	}
	return out
}

func printTable(res Result) {
	for _, set := range []struct {
		title   string
		targets []Target
	}{{"plaintext HTTP/1.1 keep-alive", res.Plain}, {"TLS client→proxy (proxy→upstream plaintext)", res.TLS},
		{"mesh path: client → proxy → (plaintext or mutual TLS) → proxy → upstream; knit-2hop* are two knit sidecars, nginx-2tls and haproxy-2tls the same two hops with mutual TLS", res.TwoHop}} {
		if len(set.targets) == 0 {
			continue
		}
		var direct Target
		for _, t := range set.targets {
			if t.Name == "direct" {
				direct = t
			}
		}
		fmt.Printf("\n%s — %s; medians of %d interleaved rounds of %s\n", set.title, res.Layout, *rounds, res.Duration)
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "target\tmax req/s (c64, median)\teach round\tx direct\tp50@1k ms\tp99@1k ms\tp99.9@1k ms\tp99@5k ms\tp99.9@5k ms\tCPU s/10k req@1k\tCPU s/10k req@5k\tpeak RSS MB\terrors\t")
		for _, t := range set.targets {
			ratio := 0.0
			if direct.MaxQPS.QPS > 0 {
				ratio = t.MaxQPS.QPS / direct.MaxQPS.QPS
			}
			each := make([]string, len(t.MaxQPSRounds))
			for i, q := range t.MaxQPSRounds {
				each[i] = strconv.FormatFloat(q, 'f', 0, 64)
			}
			fmt.Fprintf(w, "%s\t%.0f\t%s\t%.2f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\t%d\t\n", t.Name, t.MaxQPS.QPS, strings.Join(each, "/"), ratio,
				t.At1000.Percentiles["p50"], t.At1000.Percentiles["p99"], t.At1000.Percentiles["p99.9"],
				t.At5000.Percentiles["p99"], t.At5000.Percentiles["p99.9"], t.At1000.CPUPer10k, t.At5000.CPUPer10k, t.PeakRSSMB,
				t.MaxQPS.Errors+t.At1000.Errors+t.At5000.Errors)
		}
		w.Flush()
	}
	fmt.Println("\nknit-proxy's ratios (#16 targets: plaintext 64 B throughput ≥ 0.9× haproxy and CPU/request ≤ 1.2×; mTLS two hops added p99@1k ≤ 1 ms and CPU/request ≤ 1.3× haproxy-2tls; gRPC streaming and TCP CPU per unit ≤ 1.5× haproxy; peak RSS ≤ 20 MB):")
	keys := []string{}
	for k := range res.Ratios {
		if strings.Contains(k, "knit") || strings.HasPrefix(k, "twohop.") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("  %-50s %.3f\n", k, res.Ratios[k])
	}
}

// proc is a pinned server process whose CPU and memory we read from /proc.
type proc struct {
	cmd       *exec.Cmd
	adminPort int
}

func start(name string, args []string, env ...string) *proc {
	log, err := os.Create(filepath.Join(*outDir, name+".log"))
	must(err)
	cmd := exec.Command("taskset", append([]string{"-c", *srvCPU}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	must(cmd.Start())
	return &proc{cmd: cmd}
}

func (p *proc) stop() {
	if p == nil || p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// cpuSeconds is utime+stime of the process (taskset execs, so the pid is the server's).
func (p *proc) cpuSeconds() float64 {
	if p == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func (p *proc) peakRSSMB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

const body = "knit benchmark response body, 64 bytes long......................\n"

// startNginxUpstream is the upstream of every HTTP/1 and h2c shape: a 64-byte answer on /, a
// 64 KiB file on /64k, and a 16 KiB file on /chunked whose length sub_filter hides (so nginx
// sends it chunked), in plaintext on port, TLS on tlsPort and h2c on h2cPort.
func startNginxUpstream(port, tlsPort, h2cPort int, cert, key string) *proc {
	dir := filepath.Join(*outDir, "nginx-upstream")
	must(os.MkdirAll(dir, 0o755))
	must(os.WriteFile(filepath.Join(dir, "64k"), bytes.Repeat([]byte("knit-64k."), 64<<10/9+1)[:64<<10], 0o644))
	must(os.WriteFile(filepath.Join(dir, "chunked"), bytes.Repeat([]byte("knit-chunked."), 16<<10/13+1)[:16<<10], 0o644))
	conf := fmt.Sprintf(`daemon off; master_process off; worker_processes 1; pid %[1]s/nginx.pid; error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s; http2_max_concurrent_streams 256;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen 127.0.0.1:%[2]d; listen 127.0.0.1:%[3]d ssl; listen 127.0.0.1:%[7]d http2; ssl_certificate %[4]s; ssl_certificate_key %[5]s;
    location = /64k { root %[1]s; default_type application/octet-stream; }
    location = /chunked { root %[1]s; default_type text/plain; sub_filter_types *; sub_filter "no-such-text" ""; }
    location / { default_type text/plain; return 200 "%[6]s"; } }
}
`, dir, port, tlsPort, cert, key, strings.TrimSuffix(body, "\n"), h2cPort)
	must(os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))
	return start("nginx-upstream", []string{"nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")})
}

func startNginxProxy(port, upPort int, tlsMode bool, cert, key string) *proc {
	dir := filepath.Join(*outDir, "nginx-proxy")
	must(os.MkdirAll(dir, 0o755))
	listen := fmt.Sprintf("listen 127.0.0.1:%d;", port)
	if tlsMode {
		listen = fmt.Sprintf("listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s;", port, cert, key)
	}
	conf := fmt.Sprintf(`daemon off; master_process off; worker_processes 1; pid %[1]s/nginx.pid; error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  upstream up { server 127.0.0.1:%[2]d; keepalive 128; keepalive_requests 10000000; }
  server { %[3]s
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on; } }
}
`, dir, upPort, listen)
	must(os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))
	return start("nginx-proxy", []string{"nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")})
}

func startHAProxy(port, upPort int, tlsMode bool, pemBundle string) *proc {
	bind := fmt.Sprintf("bind 127.0.0.1:%d", port)
	if tlsMode {
		bind += " ssl crt " + pemBundle + " alpn http/1.1"
	}
	conf := fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 300s
  option http-keep-alive
frontend fe
  %s
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:%d
`, bind, upPort)
	path := filepath.Join(*outDir, "haproxy.cfg")
	must(os.WriteFile(path, []byte(conf), 0o644))
	return start("haproxy", []string{"haproxy", "-db", "-f", path})
}

func startKnit(binary string, port, upPort int, tlsMode bool, cert, key string) *proc {
	admin := freePort()
	tlsBlock := ""
	if tlsMode {
		tlsBlock = fmt.Sprintf("\n  tls: {certFile: %s, keyFile: %s, alpn: [http/1.1]}", cert, key)
	}
	conf := fmt.Sprintf(`admin: {address: "127.0.0.1:%d"}
listeners:
- name: bench
  address: 127.0.0.1:%d
  protocol: http
  routeConfig: main%s
routeConfigs:
- name: main
  virtualHosts: [{name: all, routes: [{name: upstream, timeout: 15s, clusters: [{name: upstream}]}]}]
clusters:
- name: upstream
  endpoints: [{address: "127.0.0.1:%d"}]
`, admin, port, tlsBlock, upPort)
	path := filepath.Join(*outDir, fmt.Sprintf("knit-proxy-%d.yaml", port))
	must(os.WriteFile(path, []byte(conf), 0o644))
	bin, _ := filepath.Abs(binary)
	p := start(fmt.Sprintf("knit-proxy-%d", port), []string{bin, "run", "--config", path, "--watch-interval", "0"})
	p.adminPort = admin
	return p
}

func makeCert() (cert, key, bundle string) {
	cert, key = filepath.Join(*outDir, "tls.crt"), filepath.Join(*outDir, "tls.key")
	bundle = filepath.Join(*outDir, "tls.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
		"-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "openssl: %s\n", out)
		must(err)
	}
	c, _ := os.ReadFile(cert)
	k, _ := os.ReadFile(key)
	must(os.WriteFile(bundle, append(c, k...), 0o600))
	return
}

// handedOut are the ports freePort has returned: a port is free again once its probe closes,
// so two calls before either server binds could otherwise get the same one (seen: a knit-proxy
// whose admin port was its listener's).
var handedOut = map[int]bool{}

func freePort() int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port
		}
	}
}

func portOf(url string) int {
	i := strings.LastIndex(url, ":")
	p, _ := strconv.Atoi(strings.TrimSuffix(url[i+1:], "/"))
	return p
}

func waitPort(port int) {
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(fmt.Errorf("port %d never opened", port))
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
