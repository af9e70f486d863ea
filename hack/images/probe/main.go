// probe is the e2e suite's tool inside pods (images have no shell):
//
//	probe dns NAME        resolves NAME with the pod's resolver; prints the addresses, exit 0
//	probe nodns NAME      exit 0 only if NAME does NOT resolve (cluster DNS forwards nothing off the machine)
//	probe http URL [N]    GET URL (N times, default 1); prints each status line, exit 0 if all are 2xx
//	probe get URL         GET URL; prints the status line and then the body, exit 0 on a 2xx
//	probe load URL N|DURATION CONC
//	                      CONC workers send GETs over keep-alive connections (N requests in all,
//	                      or for DURATION, e.g. 20s, each pausing 10ms between requests); prints
//	                      "total T", "ok K", "failed F", "host NAME COUNT" per answering host (the
//	                      third word of serve's body), "status CODE COUNT" per non-2xx status and
//	                      up to 5 "error: ..." samples; exit 0 (the caller judges the counts)
//	probe serve ADDR      an HTTP server on ADDR (e.g. :8080): every path answers 200 with
//	                      "hello from <hostname> <path>"; /healthz answers "ok"
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) == 5 && os.Args[1] == "load" {
		os.Exit(load(os.Args[2], os.Args[3], os.Args[4]))
	}
	if len(os.Args) < 3 || len(os.Args) > 4 || (len(os.Args) == 4 && os.Args[1] != "http") {
		fmt.Fprintln(os.Stderr, "usage: probe dns|nodns|get|serve ARG, probe http URL [N], or probe load URL N|DURATION CONC")
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
		if err := srv.ListenAndServe(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
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
