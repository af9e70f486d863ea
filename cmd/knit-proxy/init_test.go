package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestInitDryRunPrintsRulesAndTouchesNothing(t *testing.T) {
	var out, errb bytes.Buffer
	code := runInit([]string{"--dry-run", "--proxy-uid=1337", "--inbound-port=15006", "--outbound-port=15001",
		"--exclude-inbound-ports=15020", "--exclude-outbound-cidrs=10.96.0.0/12"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"table ip knit {", "table ip6 knit {", "tcp dport 15020 return",
		"redirect to :15006", "meta skuid 1337 return", "ip daddr 10.96.0.0/12 return", "redirect to :15001"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
}

func TestInitBadFlagIsNamed(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runInit([]string{"--dry-run", "--exclude-outbound-cidrs=10.0.0.0/99"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "--exclude-outbound-cidrs") {
		t.Fatalf("stderr %q does not name the flag", errb.String())
	}
}
