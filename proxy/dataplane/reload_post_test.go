package dataplane

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// POSTs are not retried by clients once sent, so a reload that drops or
// duplicates one shows up here (GETs would be retried silently by Go's client).
func TestReloadUnderLoadLosesNoPOST(t *testing.T) {
	var received sync.Map // body -> *atomic.Int64
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		n, _ := received.LoadOrStore(string(b), new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		w.Write(b)
	}
	a, b := httpUpstream(t, echo), httpUpstream(t, echo)
	p := startProxy(t, twoClusterConfig(a, b, "a", 60))
	url := "http://" + addr(t, p, "in") + "/"

	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := client()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf("worker-%d-post-%d-%s", w, i, strings.Repeat("x", i%2000))
				sent.Add(1)
				resp, err := cl.Post(url, "text/plain", strings.NewReader(body))
				if err != nil {
					failed.Add(1)
					t.Errorf("POST failed during reload: %v", err)
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(got) != body {
					failed.Add(1)
					t.Errorf("POST during reload: %d, body intact %v", resp.StatusCode, string(got) == body)
					return
				}
			}
		}()
	}
	for i := range 20 {
		before := sent.Load()
		apply(t, p, twoClusterConfig(a, b, []string{"a", "b"}[i%2], 60+i))
		waitFor(t, "POSTs to flow after a reload", func() bool { return sent.Load() > before+20 })
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d POSTs failed across reloads", failed.Load(), sent.Load())
	}
	count := 0
	received.Range(func(k, v any) bool {
		count++
		if n := v.(*atomic.Int64).Load(); n != 1 {
			t.Errorf("upstream received %q %d times", k, n)
		}
		return true
	})
	if int64(count) != sent.Load() {
		t.Fatalf("upstream received %d distinct POSTs of %d sent", count, sent.Load())
	}
}
