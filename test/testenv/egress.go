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

package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ServiceDialer connects the API server to a Service address (ClusterIP:port), or refuses.
type ServiceDialer func(ctx context.Context, address string) (net.Conn, error)

// serviceEgress is an HTTP CONNECT proxy on a unix socket through which the API server reaches
// every Service (its egress selector's "cluster" network): webhooks a reconciler configures
// with a Service reference. envtest has no kube-proxy, so a ClusterIP would otherwise be dialled
// through the machine's default route; here each connection goes to the test's dialer or is
// refused, and never leaves the machine.
type serviceEgress struct {
	listener net.Listener
	dir      string

	mu   sync.Mutex
	dial ServiceDialer
}

// egressSelectorConfig routes the "cluster" network (Services, pods, nodes) through the proxy;
// the control plane and etcd stay direct.
const egressSelectorConfig = `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- {name: cluster, connection: {proxyProtocol: HTTPConnect, transport: {uds: {udsName: %q}}}}
`

// startServiceEgress serves the proxy and returns the path of the API server's egress
// selector configuration that points at it.
func startServiceEgress() (*serviceEgress, string, error) {
	dir, err := os.MkdirTemp("", "knit-egress-")
	if err != nil {
		return nil, "", err
	}
	sock := filepath.Join(dir, "egress.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", fmt.Errorf("listening on %s: %w", sock, err)
	}
	config := filepath.Join(dir, "egress-selector.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, egressSelectorConfig, sock), 0o600); err != nil {
		_ = l.Close()
		_ = os.RemoveAll(dir)
		return nil, "", err
	}
	e := &serviceEgress{listener: l, dir: dir}
	go e.serve()
	return e, config, nil
}

func (e *serviceEgress) setDialer(d ServiceDialer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dial = d
}

func (e *serviceEgress) serve() {
	for {
		conn, err := e.listener.Accept()
		if err != nil {
			return // closed
		}
		go e.handle(conn)
	}
}

func (e *serviceEgress) handle(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(io.LimitReader(conn, 16<<10))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		fmt.Fprint(conn, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	e.mu.Lock()
	dial := e.dial
	e.mu.Unlock()
	if dial == nil {
		fmt.Fprintf(conn, "HTTP/1.1 502 Bad Gateway\r\n\r\nno route to %s in the test environment", req.Host)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	upstream, err := dial(ctx, req.Host)
	cancel()
	if err != nil {
		fmt.Fprintf(conn, "HTTP/1.1 502 Bad Gateway\r\n\r\n%v", err)
		return
	}
	defer upstream.Close()
	_ = conn.SetReadDeadline(time.Time{})
	fmt.Fprint(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() {
		// Bytes the reader buffered past the request belong to the tunnel.
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			_, _ = upstream.Write(b)
		}
		_, _ = io.Copy(upstream, conn)
		done <- struct{}{}
	}()
	go func() { _, _ = io.Copy(conn, upstream); done <- struct{}{} }()
	<-done
}

func (e *serviceEgress) close() {
	_ = e.listener.Close()
	_ = os.RemoveAll(e.dir)
}
