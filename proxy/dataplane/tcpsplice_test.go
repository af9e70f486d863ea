package dataplane

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Opaque TCP between two plain sockets is moved by the kernel (splice(2)): the proxy makes no
// write system call per buffer of data, the bytes arrive unchanged and in order, the client's
// half-close reaches the server, and the byte counters still count — on a tcp listener and on
// an auto-detecting one, whose sniffed first bytes are replayed before the splice.
func TestOpaqueTCPBulkIsSplicedAndArrivesWhole(t *testing.T) {
	const size = 32 << 20
	type summary struct {
		n   int64
		sum [32]byte
	}
	got := make(chan summary, 1)
	sink := tcpServer(t, func(c net.Conn) {
		h := sha256.New()
		n, _ := io.Copy(h, c) // until the client's half-close arrives
		var s summary
		s.n = n
		copy(s.sum[:], h.Sum(nil))
		got <- s
		io.WriteString(c, "done")
	})
	for _, listener := range []string{
		`{name: in, address: "127.0.0.1:0", protocol: tcp, tcpCluster: sink}`,
		`{name: in, address: "127.0.0.1:0", tcpCluster: sink, detectTimeout: 5s}`,
	} {
		t.Run(listener, func(t *testing.T) {
			p := startProxy(t, fmt.Sprintf(`
listeners: [%s]
clusters: [{name: sink, protocol: tcp, endpoints: [{address: %q}]}]
`, listener, sink))
			c, err := net.Dial("tcp", addr(t, p, "in"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			data := make([]byte, size)
			rng := rand.NewChaCha8([32]byte{7})
			rng.Read(data)
			want := sha256.Sum256(data)
			before := writeSyscalls(t)
			for off := 0; off < size; off += 1 << 20 { // 32 writes of the test's own
				if _, err := c.Write(data[off : off+1<<20]); err != nil {
					t.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			s := <-got
			if s.n != size || s.sum != want {
				t.Fatalf("sink got %d bytes (sha256 %x), want %d (%x)", s.n, s.sum, size, want)
			}
			// Copied through a 32 KiB buffer, the proxy alone makes 1024 writes here.
			if n := writeSyscalls(t) - before; n > 256 {
				t.Fatalf("%d write system calls to forward %d MiB", n, size>>20)
			}
			reply, err := io.ReadAll(c)
			if err != nil || string(reply) != "done" {
				t.Fatalf("reply %q, %v", reply, err)
			}
			// Counted before the sink saw the half-close that ended its copy.
			v := metricValue(t, p, "knit_tcp_bytes_total", `flow="received"`, `upstream="sink"`)
			if f, err := strconv.ParseFloat(v, 64); err != nil || f != size {
				t.Fatalf("received bytes counted %q, want %d", v, size)
			}
		})
	}
}
