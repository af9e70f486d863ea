package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The binary runs with GOGC=50 unless its environment sets GOGC, as its own metrics report.
func TestGCTargetIsFiftyUnlessGOGCIsSet(t *testing.T) {
	bin := buildProxy(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	cfgPath := filepath.Join(t.TempDir(), "proxy.yaml")
	os.WriteFile(cfgPath, []byte(configFor(up.Listener.Addr().String())), 0o600)
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") {
			base = append(base, kv)
		}
	}
	for _, tc := range []struct {
		gogc string // "": unset
		want string
	}{{"", "50"}, {"100", "100"}, {"200", "200"}} {
		env := base[:len(base):len(base)]
		if tc.gogc != "" {
			env = append(env, "GOGC="+tc.gogc)
		}
		_, _, logs := startBinaryEnv(t, bin, cfgPath, env)
		var admin string
		waitFor(t, "the admin server", func() bool { admin = adminAddress(logs); return admin != "" }, logs)
		if got := gaugeValue(t, "http://"+admin+"/metrics", "go_gc_gogc_percent"); got != tc.want {
			t.Errorf("GOGC=%q in the environment: go_gc_gogc_percent %s, want %s", tc.gogc, got, tc.want)
		}
	}
}

func adminAddress(l *logTail) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "admin listening" && m["probesOnly"] == false {
			a, _ := m["address"].(string)
			return a
		}
	}
	return ""
}

func gaugeValue(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	t.Fatalf("%s has no %s", url, name)
	return ""
}
