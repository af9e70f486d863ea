package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// refusingAddress is a loopback address where nothing listens any more: connections to it are
// refused, as to a pod that has exited.
func refusingAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// With one retry and two endpoints, one of them gone, every request succeeds: the retry goes
// to the endpoint this request has not tried, whatever the balancer would pick by itself. The
// endpoint that is there answers slowly, so that P2C-EWMA (its latency estimate above the gone
// endpoint's failure penalty) would pick the gone one again, and weighted picks would by chance.
func TestARetryGoesToAnEndpointTheRequestHasNotTried(t *testing.T) {
	for _, proto := range []string{"http1", "http2"} {
		for _, lb := range []string{"p2c_ewma", "round_robin", "weighted"} {
			t.Run(proto+"/"+lb, func(t *testing.T) {
				t.Parallel()
				var served atomic.Int64
				slow := func(w http.ResponseWriter, r *http.Request) {
					time.Sleep(120 * time.Millisecond)
					served.Add(1)
					w.Write([]byte("there"))
				}
				there := ""
				if proto == "http2" {
					there = h2cUpstream(t, http.HandlerFunc(slow))
				} else {
					there = httpUpstream(t, slow)
				}
				p := startProxy(t, fmt.Sprintf(`
listeners:
- {name: in, address: "127.0.0.1:0", routeConfig: main}
routeConfigs:
- name: main
  virtualHosts:
  - name: all
    routes:
    - name: r
      clusters: [{name: c}]
      retry: {attempts: 1, retryOn: [connect-failure, reset], backoff: {base: 1ms, max: 1ms}}
clusters:
- name: c
  protocol: %s
  lbPolicy: %s
  retryBudget: {ratio: 1, minPerSecond: 1000}
  endpoints: [{address: %s}, {address: %s}]
`, proto, lb, refusingAddress(t), there))
				url := "http://" + addr(t, p, "in") + "/"
				const clients, each = 4, 10
				var wg sync.WaitGroup
				var failed atomic.Int64
				var firstFailure atomic.Value
				fail := func(why string) {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, why)
				}
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						cl := client()
						for range each {
							resp, err := cl.Get(url)
							if err != nil {
								fail(err.Error())
								continue
							}
							body, _ := io.ReadAll(resp.Body)
							resp.Body.Close()
							if resp.StatusCode != http.StatusOK {
								fail(fmt.Sprintf("%d %q", resp.StatusCode, body))
							}
						}
					}()
				}
				wg.Wait()
				if n := failed.Load(); n != 0 {
					t.Fatalf("%d of %d requests failed (the first: %v); with one retry each must reach the endpoint that is there (served %d)",
						n, clients*each, firstFailure.Load(), served.Load())
				}
			})
		}
	}
}

// An opaque TCP connection tries each endpoint at most once while another is left: with two of
// three endpoints gone, its three connect attempts always reach the one that is there.
func TestTCPConnectAttemptsGoToEndpointsNotTried(t *testing.T) {
	for _, lb := range []string{"p2c_ewma", "weighted"} {
		t.Run(lb, func(t *testing.T) {
			echo := tcpEcho(t)
			p := startProxy(t, fmt.Sprintf(`
listeners:
- {name: tcp, address: "127.0.0.1:0", protocol: tcp, tcpCluster: c}
clusters:
- name: c
  protocol: tcp
  lbPolicy: %s
  endpoints: [{address: %s}, {address: %s}, {address: %s}]
`, lb, refusingAddress(t), refusingAddress(t), echo))
			for i := range 30 {
				c, err := net.Dial("tcp", addr(t, p, "tcp"))
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				line := fmt.Sprintf("line %d\n", i)
				io.WriteString(c, line)
				got, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if got != line {
					t.Fatalf("connection %d: echo %q, %v; want it carried to the endpoint that is there", i, got, err)
				}
			}
		})
	}
}
