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
	"strings"
	"testing"
)

// connect opens a tunnel through the egress proxy as the API server does (HTTP CONNECT on the
// unix socket) and returns the response status and the connection.
func connect(t *testing.T, e *serviceEgress, target string) (int, net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("unix", e.listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, conn, br
}

func TestServiceEgressTunnelsOnlyWhatTheDialerRoutes(t *testing.T) {
	e, config, err := startServiceEgress()
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if !strings.HasSuffix(config, "egress-selector.yaml") {
		t.Errorf("config path %s", config)
	}

	if code, _, _ := connect(t, e, "10.0.0.7:443"); code != http.StatusBadGateway {
		t.Errorf("without a dialer: status %d, want 502", code)
	}

	upstream, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	go func() {
		c, err := upstream.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo
	}()
	e.setDialer(func(ctx context.Context, address string) (net.Conn, error) {
		if address != "10.0.0.7:443" {
			return nil, fmt.Errorf("no route to %s", address)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", upstream.Addr().String())
	})
	if code, _, _ := connect(t, e, "10.0.0.8:443"); code != http.StatusBadGateway {
		t.Errorf("unknown address: status %d, want 502", code)
	}
	code, conn, br := connect(t, e, "10.0.0.7:443")
	if code != http.StatusOK {
		t.Fatalf("routed address: status %d, want 200", code)
	}
	fmt.Fprint(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Errorf("through the tunnel: %q, %v", line, err)
	}
}
