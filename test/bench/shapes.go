package main

// The traffic shapes beyond the 64-byte GET: HTTP/1.1 bodies (fortio), many HTTP/2 streams on
// few h2c connections, gRPC unary and server streaming, opaque TCP bulk (test/bench/load). Each
// shape runs its targets interleaved over rounds at maximum rate and reports, per target, the
// median and min–max of the rate and of the proxy's CPU per unit, as ratios to haproxy.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// ShapeRun is one measured run of one target.
type ShapeRun struct {
	Rate   float64 `json:"rate"`         // requests (messages) per second, or MiB/s for TCP
	CPU    float64 `json:"cpu_per_unit"` // proxy CPU s per 10k requests (messages), or per GiB
	Errors int64   `json:"errors"`
}

// ShapeTarget is one target's rounds in one shape.
type ShapeTarget struct {
	Name      string     `json:"name"`
	Rate      Spread     `json:"rate"`
	CPU       Spread     `json:"cpu_per_unit"`
	Errors    int64      `json:"errors"`
	PeakRSSMB float64    `json:"proxy_peak_rss_mb"`
	Rounds    []ShapeRun `json:"rounds"`
}

// Spread is a median with the range over rounds.
type Spread struct{ Median, Min, Max float64 }

// ShapeResult is one shape's table.
type ShapeResult struct {
	Shape    string        `json:"shape"`
	Title    string        `json:"title"`
	RateUnit string        `json:"rate_unit"`
	CPUUnit  string        `json:"cpu_unit"`
	Targets  []ShapeTarget `json:"targets"`
}

type shapeDef struct {
	name, title       string
	rateUnit, cpuUnit string
	targets           []string
	start             func(target string, up upstreams) server
	run               func(s server, d time.Duration) ShapeRun
}

// upstreams are the ports of the shared upstreams.
type upstreams struct {
	http, h2c, grpc, sink int
	cert, key, pemBundle  string
}

var shapeDefs = []shapeDef{
	{name: "post1k", title: "HTTP/1.1 keep-alive, 1 KiB POST, 64 B response (c16)", rateUnit: "req/s", cpuUnit: "CPU s/10k req",
		targets: []string{"direct", "knit", "nginx", "haproxy"}, start: startH1,
		run: fortioRun("", "-payload-size", "1024")},
	{name: "resp64k", title: "HTTP/1.1 keep-alive, GET of a 64 KiB response (c16)", rateUnit: "req/s", cpuUnit: "CPU s/10k req",
		targets: []string{"direct", "knit", "nginx", "haproxy"}, start: startH1, run: fortioRun("64k")},
	{name: "chunked", title: "HTTP/1.1 keep-alive, GET of a 16 KiB chunked response of unknown length (c16)", rateUnit: "req/s", cpuUnit: "CPU s/10k req",
		targets: []string{"direct", "knit", "nginx", "haproxy"}, start: startH1, run: fortioRun("chunked")},
	{name: "h2c", title: "HTTP/2 prior knowledge (h2c) client→proxy, 4 connections × 16 streams, 64 B GET; proxy→upstream HTTP/1.1", rateUnit: "req/s", cpuUnit: "CPU s/10k req",
		targets: []string{"direct", "knit", "nginx", "haproxy"}, start: startH2C, run: loadRun("h2c", "-c", "4", "-s", "16")},
	{name: "grpc-unary", title: "gRPC unary, 64 B messages, 4 connections × 16 concurrent calls, Go gRPC upstream (h2c both sides)", rateUnit: "calls/s", cpuUnit: "CPU s/10k calls",
		targets: []string{"direct", "knit", "nginx", "haproxy"}, start: startGRPC, run: loadRun("grpc-unary", "-c", "4", "-s", "16")},
	{name: "grpc-stream", title: "gRPC server streaming, 100 × 64 B messages per call, 2 connections × 8 calls", rateUnit: "msg/s", cpuUnit: "CPU s/10k msg",
		targets: []string{"direct", "knit", "nginx", "haproxy"}, start: startGRPC, run: loadRun("grpc-stream", "-c", "2", "-s", "8")},
	{name: "tcp", title: "opaque TCP bulk, 4 connections writing 64 KiB at a time to a sink (nginx-light has no stream module)", rateUnit: "MiB/s", cpuUnit: "CPU s/GiB",
		targets: []string{"direct", "knit", "haproxy"}, start: startTCP, run: loadRun("tcp", "-c", "4")},
}

func shapeSelected(name string) bool {
	return *shapes == "" || slices.Contains(strings.Split(*shapes, ","), name)
}

func measureShapes(up upstreams) []ShapeResult {
	var out []ShapeResult
	for _, sd := range shapeDefs {
		if !shapeSelected(sd.name) {
			continue
		}
		var names []string
		for _, n := range sd.targets {
			if *only == "" || strings.Contains(","+*only+",", ","+n+",") {
				names = append(names, n)
				if n == "knit" && *baseBin != "" {
					names = append(names, "knit-base")
				}
			}
		}
		fmt.Fprintf(os.Stderr, "== %s: %s, %d interleaved rounds of %s\n", sd.name, strings.Join(names, ", "), *rounds, *shapeDuration)
		var servers []server
		for _, n := range names {
			servers = append(servers, startShapeTarget(sd, n, up))
		}
		acc := make([][]ShapeRun, len(servers))
		for _, s := range servers { // warm-up: pools, caches, the heap's size
			sd.run(s, time.Second)
		}
		for r := 0; r < *rounds; r++ {
			for i, s := range servers {
				acc[i] = append(acc[i], sd.run(s, *shapeDuration))
				fmt.Fprintf(os.Stderr, "   round %d %s: %.0f %s, %.3f %s, errors %d\n", r+1, s.name, acc[i][r].Rate, sd.rateUnit, acc[i][r].CPU, sd.cpuUnit, acc[i][r].Errors)
			}
		}
		res := ShapeResult{Shape: sd.name, Title: sd.title, RateUnit: sd.rateUnit, CPUUnit: sd.cpuUnit}
		for i, s := range servers {
			t := ShapeTarget{Name: s.name, Rounds: acc[i]}
			t.Rate = spread(acc[i], func(r ShapeRun) float64 { return r.Rate })
			t.CPU = spread(acc[i], func(r ShapeRun) float64 { return r.CPU })
			for _, r := range acc[i] {
				t.Errors += r.Errors
			}
			if s.p != nil {
				t.PeakRSSMB = s.p.peakRSSMB()
			}
			res.Targets = append(res.Targets, t)
			s.p.stop()
		}
		out = append(out, res)
	}
	return out
}

// startShapeTarget starts target n of a shape; knit-base is knit's set-up with the baseline binary.
func startShapeTarget(sd shapeDef, n string, up upstreams) server {
	if n != "knit-base" {
		return sd.start(n, up)
	}
	bin, suffix := *proxyBin, knitTagSuffix
	*proxyBin, knitTagSuffix = *baseBin, "-base"
	defer func() { *proxyBin, knitTagSuffix = bin, suffix }()
	s := sd.start("knit", up)
	s.name = n
	return s
}

func spread(rs []ShapeRun, get func(ShapeRun) float64) Spread {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = get(r)
	}
	sort.Float64s(v)
	if len(v) == 0 {
		return Spread{}
	}
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Median: m, Min: v[0], Max: v[len(v)-1]}
}

// shapeRatios are knit against haproxy and nginx: rate and CPU per unit, medians.
func shapeRatios(res []ShapeResult, out map[string]float64) {
	for _, sr := range res {
		by := map[string]ShapeTarget{}
		for _, t := range sr.Targets {
			by[t.Name] = t
		}
		k, ok := by["knit"]
		if !ok {
			continue
		}
		for _, peer := range []string{"haproxy", "nginx"} {
			p, ok := by[peer]
			if !ok || p.Rate.Median == 0 {
				continue
			}
			out[sr.Shape+".knit_vs_"+peer+".rate"] = k.Rate.Median / p.Rate.Median
			if p.CPU.Median > 0 {
				out[sr.Shape+".knit_vs_"+peer+".cpu_per_unit"] = k.CPU.Median / p.CPU.Median
			}
		}
	}
}

func printShapes(res []ShapeResult) {
	for _, sr := range res {
		var h ShapeTarget
		for _, t := range sr.Targets {
			if t.Name == "haproxy" {
				h = t
			}
		}
		fmt.Printf("\n%s — medians (min–max) of %d interleaved rounds of %s\n", sr.Title, *rounds, *shapeDuration)
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(w, "target\t%s\tx haproxy\t%s\tx haproxy\tpeak RSS MB\terrors\t\n", sr.RateUnit, sr.CPUUnit)
		for _, t := range sr.Targets {
			rr, cr := "–", "–"
			if h.Rate.Median > 0 {
				rr = fmt.Sprintf("%.2f", t.Rate.Median/h.Rate.Median)
			}
			if h.CPU.Median > 0 && t.CPU.Median > 0 {
				cr = fmt.Sprintf("%.2f", t.CPU.Median/h.CPU.Median)
			}
			fmt.Fprintf(w, "%s\t%.0f (%.0f–%.0f)\t%s\t%.3f (%.3f–%.3f)\t%s\t%.1f\t%d\t\n", t.Name, t.Rate.Median, t.Rate.Min, t.Rate.Max, rr,
				t.CPU.Median, t.CPU.Min, t.CPU.Max, cr, t.PeakRSSMB, t.Errors)
		}
		w.Flush()
	}
}

// fortioRun loads path (no leading slash) at maximum rate on 16 connections with fortio.
func fortioRun(path string, extra ...string) func(server, time.Duration) ShapeRun {
	return func(s server, d time.Duration) ShapeRun {
		r := load(s.url+path, 0, 16, d, s.p, "", extra...)
		return ShapeRun{Rate: r.QPS, CPU: r.CPUPer10k, Errors: r.Errors}
	}
}

// loadRun runs test/bench/load in mode against the server's address on the load generator's CPU.
func loadRun(mode string, args ...string) func(server, time.Duration) ShapeRun {
	return func(s server, d time.Duration) ShapeRun {
		host := strings.TrimSuffix(strings.TrimPrefix(s.url, "http://"), "/")
		cmdArgs := append([]string{"-c", *genCPU, *loadBin, "-mode", mode, "-addr", host, "-t", d.String()}, args...)
		cpu0 := s.p.cpuSeconds()
		out, err := exec.Command("taskset", cmdArgs...).Output()
		cpu := s.p.cpuSeconds() - cpu0
		if err != nil {
			must(fmt.Errorf("load %s against %s: %w", mode, s.name, err))
		}
		var lr struct {
			Requests, Errors, Bytes int64
			Seconds                 float64
			LastErr                 string `json:"last_error"`
		}
		must(json.Unmarshal(out, &lr))
		if lr.LastErr != "" {
			fmt.Fprintf(os.Stderr, "   %s %s: %d errors, last: %s\n", mode, s.name, lr.Errors, lr.LastErr)
		}
		r := ShapeRun{Errors: lr.Errors}
		if mode == "tcp" {
			r.Rate = float64(lr.Bytes) / lr.Seconds / (1 << 20)
			if lr.Bytes > 0 {
				r.CPU = cpu / (float64(lr.Bytes) / (1 << 30))
			}
			return r
		}
		r.Rate = float64(lr.Requests) / lr.Seconds
		if lr.Requests > 0 {
			r.CPU = cpu / float64(lr.Requests) * 10000
		}
		return r
	}
}

func startH1(name string, up upstreams) server {
	return startServer(name, false, up.http, 0, up.cert, up.key, up.pemBundle)
}

func startH2C(name string, up upstreams) server {
	port := freePort()
	var p *proc
	switch name {
	case "direct":
		port = up.h2c
	case "knit":
		p = startKnitYAML("h2c", port, "http", fmt.Sprintf("{name: upstream, endpoints: [{address: \"127.0.0.1:%d\"}]}", up.http))
	case "nginx":
		p = startNginx("nginx-h2c", fmt.Sprintf(`upstream up { server 127.0.0.1:%d; keepalive 128; keepalive_requests 10000000; }
  server { listen 127.0.0.1:%d http2; http2_max_concurrent_streams 256; keepalive_requests 10000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }`, up.http, port))
	case "haproxy":
		p = startHAProxyConf("haproxy-h2c", fmt.Sprintf(`frontend fe
  bind 127.0.0.1:%d proto h2
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:%d`, port, up.http), "http")
	}
	waitPort(port)
	return server{name: name, url: fmt.Sprintf("http://127.0.0.1:%d/", port), p: p}
}

func startGRPC(name string, up upstreams) server {
	port := freePort()
	var p *proc
	switch name {
	case "direct":
		port = up.grpc
	case "knit":
		p = startKnitYAML("grpc", port, "http", fmt.Sprintf("{name: upstream, protocol: http2, endpoints: [{address: \"127.0.0.1:%d\"}]}", up.grpc))
	case "nginx":
		p = startNginx("nginx-grpc", fmt.Sprintf(`upstream g { server 127.0.0.1:%d; keepalive 128; keepalive_requests 10000000; }
  server { listen 127.0.0.1:%d http2; http2_max_concurrent_streams 256; keepalive_requests 10000000;
    location / { grpc_pass grpc://g; } }`, up.grpc, port))
	case "haproxy":
		p = startHAProxyConf("haproxy-grpc", fmt.Sprintf(`frontend fe
  bind 127.0.0.1:%d proto h2
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:%d proto h2`, port, up.grpc), "http")
	}
	waitPort(port)
	return server{name: name, url: fmt.Sprintf("http://127.0.0.1:%d/", port), p: p}
}

func startTCP(name string, up upstreams) server {
	port := freePort()
	var p *proc
	switch name {
	case "direct":
		port = up.sink
	case "knit":
		admin := freePort()
		conf := fmt.Sprintf(`admin: {address: "127.0.0.1:%d"}
listeners: [{name: bench, address: "127.0.0.1:%d", protocol: tcp, tcpCluster: sink}]
clusters: [{name: sink, protocol: tcp, endpoints: [{address: "127.0.0.1:%d"}]}]
`, admin, port, up.sink)
		p = runKnit("tcp", conf)
		p.adminPort = admin
	case "haproxy":
		p = startHAProxyConf("haproxy-tcp", fmt.Sprintf(`frontend fe
  bind 127.0.0.1:%d
  default_backend be
backend be
  server s1 127.0.0.1:%d`, port, up.sink), "tcp")
	}
	waitPort(port)
	return server{name: name, url: fmt.Sprintf("http://127.0.0.1:%d/", port), p: p}
}

// startKnitYAML runs knit-proxy with one HTTP listener routing everything to cluster (YAML).
func startKnitYAML(tag string, port int, protocol, cluster string) *proc {
	admin := freePort()
	conf := fmt.Sprintf(`admin: {address: "127.0.0.1:%d"}
listeners: [{name: bench, address: "127.0.0.1:%d", protocol: %s, routeConfig: main}]
routeConfigs: [{name: main, virtualHosts: [{name: all, routes: [{name: upstream, timeout: 15s, clusters: [{name: upstream}]}]}]}]
clusters: [%s]
`, admin, port, protocol, cluster)
	p := runKnit(tag, conf)
	p.adminPort = admin
	return p
}

// knitTagSuffix tells a baseline knit-proxy's config and log apart from knit's.
var knitTagSuffix = ""

func runKnit(tag, conf string) *proc {
	tag += knitTagSuffix
	path := filepath.Join(*outDir, "knit-proxy-"+tag+".yaml")
	must(os.WriteFile(path, []byte(conf), 0o644))
	bin, _ := filepath.Abs(*proxyBin)
	return start("knit-proxy-"+tag, []string{bin, "run", "--config", path, "--watch-interval", "0"})
}

// startNginx runs one nginx worker with servers (the body of its http block).
func startNginx(name, servers string) *proc {
	dir := filepath.Join(*outDir, name)
	must(os.MkdirAll(dir, 0o755))
	conf := fmt.Sprintf(`daemon off; master_process off; worker_processes 1; pid %[1]s/nginx.pid; error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  %[2]s
}
`, dir, servers)
	must(os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))
	return start(name, []string{"nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")})
}

// startHAProxyConf runs one haproxy thread with sections after its global and defaults.
func startHAProxyConf(name, sections, mode string) *proc {
	conf := fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode %s
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 300s
%s
`, mode, sections)
	path := filepath.Join(*outDir, name+".cfg")
	must(os.WriteFile(path, []byte(conf), 0o644))
	return start(name, []string{"haproxy", "-db", "-f", path})
}

// startMeshPeers are nginx and haproxy set up as a mesh's two TLS hops in one process each:
// a client-side proxy that opens mutual TLS (client certificate, server verified) to a
// server-side proxy that requires and verifies a client certificate and forwards to the
// upstream, with keep-alive pools on both hops, like knit-2hop-mtls.
func startMeshPeer(name string, port, upPort int, cert, key, pemBundle string) *proc {
	hop := freePort()
	switch name {
	case "nginx-2tls":
		return startNginx("nginx-2tls", fmt.Sprintf(`upstream hop { server 127.0.0.1:%[3]d; keepalive 128; keepalive_requests 10000000; }
  upstream up { server 127.0.0.1:%[2]d; keepalive 128; keepalive_requests 10000000; }
  server { listen 127.0.0.1:%[1]d;
    location / { proxy_pass https://hop; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_certificate %[4]s; proxy_ssl_certificate_key %[5]s; proxy_ssl_trusted_certificate %[4]s;
      proxy_ssl_verify on; proxy_ssl_name localhost; proxy_ssl_session_reuse on; } }
  server { listen 127.0.0.1:%[3]d ssl; ssl_certificate %[4]s; ssl_certificate_key %[5]s;
    ssl_client_certificate %[4]s; ssl_verify_client on;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
			port, upPort, hop, cert, key))
	case "haproxy-2tls":
		return startHAProxyConf("haproxy-2tls", fmt.Sprintf(`frontend client_side
  bind 127.0.0.1:%[1]d
  default_backend hop
backend hop
  http-reuse always
  server s1 127.0.0.1:%[3]d ssl crt %[4]s ca-file %[5]s verify required verifyhost localhost
frontend server_side
  bind 127.0.0.1:%[3]d ssl crt %[4]s ca-file %[5]s verify required
  default_backend up
backend up
  http-reuse always
  server s1 127.0.0.1:%[2]d`, port, upPort, hop, pemBundle, cert), "http\n  option http-keep-alive")
	}
	must(fmt.Errorf("unknown mesh peer %s", name))
	return nil
}
