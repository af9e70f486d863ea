// probe is the e2e suite's tool inside pods (images have no shell):
//
//	probe dns NAME        resolves NAME with the pod's resolver; prints the addresses, exit 0
//	probe nodns NAME      exit 0 only if NAME does NOT resolve (cluster DNS forwards nothing off the machine)
//	probe http URL [N]    GET URL (N times, default 1); prints each status line, exit 0 if all are 2xx
//	probe get URL         GET URL; prints the status line and then the body, exit 0 on a 2xx
//	probe getall URL...   GET each URL; prints "URL status body" per line, exit 0 if all are 2xx
//	probe load URL N|DURATION CONC
//	                      CONC workers send GETs over keep-alive connections (N requests in all,
//	                      or for DURATION, e.g. 20s, each pausing 10ms between requests); prints
//	                      "total T", "ok K", "failed F", "host NAME COUNT" per answering host (the
//	                      third word of serve's body), "status CODE COUNT" per non-2xx status and
//	                      up to 5 "error: ..." samples; exit 0 (the caller judges the counts)
//	probe serve ADDR      an HTTP server on ADDR (e.g. :8080): every path answers 200 with
//	                      "hello from <hostname> <path>"; /healthz answers "ok". On SIGTERM it
//	                      keeps serving for 5 s (while its endpoint leaves the Service), then
//	                      shuts down gracefully
//	probe load URL RATE   GETs URL RATE times a second until SIGTERM over keep-alive connections;
//	                      prints "load ok=N fail=M" every second and each failure, and on SIGTERM
//	                      waits for requests in flight and prints "load total ok=N fail=M"
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "getall" {
		os.Exit(getAll(os.Args[2:]))
	}
	if len(os.Args) == 5 && os.Args[1] == "load" {
		os.Exit(loadCount(os.Args[2], os.Args[3], os.Args[4]))
	}
	if len(os.Args) < 3 || len(os.Args) > 4 || (len(os.Args) == 4 && os.Args[1] != "http" && os.Args[1] != "load") {
		fmt.Fprintln(os.Stderr, "usage: probe dns|nodns|get|serve ARG, probe http URL [N], probe load URL RATE, probe load URL N|DURATION CONC or probe getall URL...")
		os.Exit(2)
	}
	arg := os.Args[2]
	switch os.Args[1] {
	case "dns":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(strings.Join(addrs, " "))
	case "nodns":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg)
		if err == nil {
			fmt.Println("resolved:", strings.Join(addrs, " "))
			os.Exit(1)
		}
		fmt.Println("not resolved:", err)
	case "http":
		n := 1
		if len(os.Args) == 4 {
			v, err := strconv.Atoi(os.Args[3])
			if err != nil || v < 1 {
				fmt.Fprintln(os.Stderr, "N must be a positive number")
				os.Exit(2)
			}
			n = v
		}
		failed := false
		for i := 0; i < n; i++ {
			status, body, err := get(arg)
			if err != nil {
				fmt.Println("error:", err)
				failed = true
				continue
			}
			fmt.Println(status, strings.TrimSpace(body))
			if !strings.HasPrefix(status, "2") {
				failed = true
			}
		}
		if failed {
			os.Exit(1)
		}
	case "get":
		status, body, err := get(arg)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(status)
		fmt.Print(body)
		if !strings.HasPrefix(status, "2") {
			os.Exit(1)
		}
	case "serve":
		host, _ := os.Hostname()
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s %s\n", host, r.URL.Path)
		})
		srv := &http.Server{Addr: arg, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		fmt.Println("serving on", arg)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			<-stop
			fmt.Println("SIGTERM: serving 5 s more, then shutting down")
			time.Sleep(5 * time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}()
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		time.Sleep(100 * time.Millisecond) // Shutdown returns after ListenAndServe; let it finish
	case "load":
		rate, err := strconv.Atoi(os.Args[3])
		if err != nil || rate < 1 || rate > 1000 {
			fmt.Fprintln(os.Stderr, "RATE must be between 1 and 1000")
			os.Exit(2)
		}
		loadAtRate(arg, rate)
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}

// get sends one GET with a 10 s timeout and a fresh connection; it returns the status and body.
func get(url string) (status, body string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.Status, string(b), err
	}
	return resp.Status, string(b), nil
}

// getAll GETs each URL once and prints one line per URL.
func getAll(urls []string) int {
	code := 0
	for _, u := range urls {
		status, body, err := get(u)
		if err != nil {
			fmt.Println(u, "error:", err)
			code = 1
			continue
		}
		fmt.Println(u, status, strings.TrimSpace(body))
		if !strings.HasPrefix(status, "2") {
			code = 1
		}
	}
	return code
}

// load sends rate GETs a second until SIGTERM and counts the answers: anything but a 2xx, or an
// error, is a failure.
func loadAtRate(url string, rate int) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}}
	var ok, fail, printed atomic.Int64
	var inflight sync.WaitGroup
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	report := time.NewTicker(time.Second)
	defer report.Stop()
	for {
		select {
		case <-stop:
			inflight.Wait()
			fmt.Printf("load total ok=%d fail=%d\n", ok.Load(), fail.Load())
			return
		case <-report.C:
			fmt.Printf("load ok=%d fail=%d\n", ok.Load(), fail.Load())
		case <-tick.C:
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					if err == nil && resp.StatusCode/100 != 2 {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					fail.Add(1)
					if printed.Add(1) <= 100 {
						fmt.Printf("load failure at %s: %v\n", time.Now().UTC().Format(time.RFC3339Nano), err)
					}
					return
				}
				ok.Add(1)
			}()
		}
	}
}
