package httpproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The transport may read a request body on its own goroutine after the handler has returned
// (an upstream that answers before the client's body ends). Those reads must fail as reads of
// a finished request do, not crash the proxy: net/http's HTTP/2 ResponseWriter panics when its
// deadlines are set after its handler returned.
func TestRequestBodyReadAfterTheHandlerReturnedFailsWithoutCrashing(t *testing.T) {
	bodies := make(chan io.Reader, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// 1 ns: every read re-arms the idle deadline through the ResponseWriter.
		defer GuardRequestBody(w, r, time.Nanosecond).Release()
		bodies <- r.Body
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe() // a request body that has not ended when the response does
	defer pw.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL, pr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("response over HTTP/%d, want HTTP/2", resp.ProtoMajor)
	}

	// The stream's writer is released shortly after the response ends; read on past that.
	body := <-bodies
	buf := make([]byte, 16)
	var rerr error
	for range 200 {
		if _, rerr = body.Read(buf); rerr == nil {
			t.Fatal("read a request body after its handler returned")
		}
		time.Sleep(time.Millisecond)
	}
}
