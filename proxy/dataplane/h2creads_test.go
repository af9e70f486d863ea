package dataplane

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// readSyscalls is how many read system calls this process has made (Linux).
func readSyscalls(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no syscr in /proc/self/io")
	return 0
}

// A burst of small frames from an h2c client (a gRPC call is HEADERS, DATA, WINDOW_UPDATE and
// PING frames of a few bytes each) costs the proxy a few read system calls, not two per frame
// (its 9-byte header, then its payload), on a plaintext HTTP listener and on an auto-detecting
// one.
func TestH2CFrameBurstIsReadInFewSystemCalls(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	const pings = 256
	for _, protocol := range []string{"http", "auto"} {
		t.Run(protocol, func(t *testing.T) {
			p := startProxy(t, proxyConfig("protocol: "+protocol, "", "", up))
			c, err := net.Dial("tcp", addr(t, p, "in"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var burst bytes.Buffer
			burst.WriteString(http2.ClientPreface)
			fw := http2.NewFramer(&burst, nil)
			if err := fw.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			for i := range pings {
				if err := fw.WritePing(false, [8]byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			fr := http2.NewFramer(nil, bufio.NewReaderSize(c, 64<<10))
			before := readSyscalls(t)
			if _, err := c.Write(burst.Bytes()); err != nil {
				t.Fatal(err)
			}
			for acks := 0; acks < pings; {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("after %d PING acks: %v", acks, err)
				}
				if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
					acks++
				}
			}
			// Unbuffered, the proxy alone makes 2 × 258 reads here; buffered, a handful (the
			// test's own reads of the acks are a few more).
			if n := readSyscalls(t) - before; n > pings/4 {
				t.Fatalf("%d read system calls for a burst of %d frames", n, pings+2)
			}
		})
	}
}
