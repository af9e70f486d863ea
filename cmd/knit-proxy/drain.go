package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
)

// drainHandler serves POST /drain on the loopback admin port: the first step of a sidecar's
// shutdown (dataplane.Proxy.Retire). It answers at once; SIGTERM does the rest.
func drainHandler(log logr.Logger, retire func()) func(*http.ServeMux) {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) {
			log.Info("drain requested on the admin port", "remote", r.RemoteAddr)
			retire()
			w.Write([]byte("retiring\n"))
		})
	}
}

// runDrain is `knit-proxy drain`, the injected sidecar's preStop hook. The kubelet runs it
// when the pod starts terminating, at the moment it signals the app containers; a native
// sidecar gets its own SIGTERM only once they have exited. It asks the proxy on the loopback
// admin port to retire: not ready, inbound clients asked to leave while it still serves them,
// outbound untouched for the app. Exit codes: 0 done, 1 failed, 2 bad flags.
func runDrain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("local-admin-port", 15000, "the sidecar's full admin port on 127.0.0.1 (run's --local-admin-port)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the proxy's answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *port < 1 || *port > 65535 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "knit-proxy drain: --local-admin-port must be a port between 1 and 65535, and no arguments follow the flags")
		return 2
	}
	c := &http.Client{Timeout: *timeout, Transport: &http.Transport{Proxy: nil}}
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)) + "/drain"
	resp, err := c.Post(url, "text/plain", nil)
	if err != nil {
		fmt.Fprintln(stderr, "knit-proxy drain:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "knit-proxy drain: %s answered %s: %s\n", url, resp.Status, body)
		return 1
	}
	fmt.Fprintf(stdout, "knit-proxy drain: %s", body)
	return 0
}
