package detect

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		in   string
		want Protocol
	}{
		{"", Unknown},
		{"G", Unknown},
		{"GET", Unknown},
		{"GET /", HTTP1},
		{"POST /x HTTP/1.1\r\n", HTTP1},
		{"OPTIONS * HTTP/1.1", HTTP1},
		{"PRI * HTTP/2.0\r\n", Unknown},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP2},
		{"\x16\x03\x01\x02\x00", TLS},
		{"\x16", Unknown},
		{"\x16\x01", Opaque},
		{"\x00\x00\x00\x0a", Opaque},
		{"SSH-2.0-OpenSSH", Opaque},
		{"GETX", Opaque},
		{"get /", Opaque},
		{"PRX", Opaque},
	}
	for _, c := range cases {
		if got := Classify([]byte(c.in)); got != c.want {
			t.Errorf("Classify(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// sniffPair runs Sniff on the server side of a real loopback connection.
func sniffPair(t *testing.T, timeout time.Duration, client func(net.Conn)) (Protocol, []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		client(c)
	}()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	p, conn, err := Sniff(sc, timeout)
	if err != nil {
		t.Fatalf("Sniff: %v", err)
	}
	return p, conn.Peeked()
}

func TestSniffRealSockets(t *testing.T) {
	t.Run("http1 split across writes", func(t *testing.T) {
		p, peek := sniffPair(t, 10*time.Second, func(c net.Conn) {
			c.Write([]byte("GE"))
			time.Sleep(20 * time.Millisecond) // let the first segment arrive alone
			c.Write([]byte("T / HTTP/1.1\r\nHost: x\r\n\r\n"))
			io.Copy(io.Discard, c)
		})
		if p != HTTP1 || len(peek) < 4 {
			t.Fatalf("got %v %q", p, peek)
		}
	})
	t.Run("h2 preface", func(t *testing.T) {
		p, _ := sniffPair(t, 10*time.Second, func(c net.Conn) {
			c.Write(h2Preface)
			io.Copy(io.Discard, c)
		})
		if p != HTTP2 {
			t.Fatalf("got %v", p)
		}
	})
	t.Run("tls client hello", func(t *testing.T) {
		p, _ := sniffPair(t, 10*time.Second, func(c net.Conn) {
			tc := tls.Client(c, &tls.Config{ServerName: "x", InsecureSkipVerify: true})
			tc.Handshake()
		})
		if p != TLS {
			t.Fatalf("got %v", p)
		}
	})
	t.Run("server speaks first times out to opaque", func(t *testing.T) {
		done := make(chan struct{})
		defer close(done)
		start := time.Now()
		p, peek := sniffPair(t, 100*time.Millisecond, func(c net.Conn) { <-done; c.Close() })
		if p != Opaque || len(peek) != 0 {
			t.Fatalf("got %v %q", p, peek)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("detection timeout not honoured")
		}
	})
}

func TestConnReplaysPeekedBytes(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() { b.Write([]byte(" world")); b.Close() }()
	c := &Conn{Conn: a, peeked: []byte("hello")}
	got, _ := io.ReadAll(c)
	if string(got) != "hello world" {
		t.Fatalf("got %q", got)
	}
}
