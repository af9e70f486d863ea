package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadCount runs probe's load mode (see the package comment) and returns the exit code.
func loadCount(url, amount, concurrency string) int {
	conc, err := strconv.Atoi(concurrency)
	if err != nil || conc < 1 || conc > 64 {
		fmt.Fprintln(os.Stderr, "CONC must be 1..64")
		return 2
	}
	var budget atomic.Int64 // requests left when counting, else unused
	var until time.Time
	pause := time.Duration(0)
	if n, err := strconv.Atoi(amount); err == nil && n > 0 {
		budget.Store(int64(n))
	} else if d, err := time.ParseDuration(amount); err == nil && d > 0 && d <= 10*time.Minute {
		until, pause = time.Now().Add(d), 10*time.Millisecond
	} else {
		fmt.Fprintln(os.Stderr, "N must be a positive number or DURATION a duration up to 10m")
		return 2
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	var mu sync.Mutex
	hosts, statuses := map[string]int{}, map[string]int{}
	var errs []string
	total, ok := 0, 0
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if until.IsZero() {
					if budget.Add(-1) < 0 {
						return
					}
				} else if time.Now().After(until) {
					return
				}
				host, status, err := loadOnce(client, url)
				mu.Lock()
				total++
				switch {
				case err != nil:
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
				case !strings.HasPrefix(status, "2"):
					statuses[status]++
				default:
					ok++
					hosts[host]++
				}
				mu.Unlock()
				time.Sleep(pause)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("total %d\nok %d\nfailed %d\n", total, ok, total-ok)
	for _, m := range []struct {
		prefix string
		counts map[string]int
	}{{"host", hosts}, {"status", statuses}} {
		keys := make([]string, 0, len(m.counts))
		for k := range m.counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("%s %s %d\n", m.prefix, k, m.counts[k])
		}
	}
	for _, e := range errs {
		fmt.Println("error:", e)
	}
	return 0
}

// loadOnce sends one GET on a kept-alive connection; host is the third word of serve's body.
func loadOnce(client *http.Client, url string) (host, status string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", resp.Status, err
	}
	status = strconv.Itoa(resp.StatusCode)
	if f := strings.Fields(string(b)); len(f) >= 3 && f[0] == "hello" {
		host = f[2]
	}
	return host, status, nil
}
