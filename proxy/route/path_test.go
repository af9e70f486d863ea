package route

import (
	"net/http"
	"testing"
)

func TestNormalizePathMergesSlashesRemovesDotsAndUnescapes(t *testing.T) {
	for _, tc := range []struct{ target, path, raw string }{
		{"/", "/", "/"},
		{"/api/v1/items", "/api/v1/items", "/api/v1/items"},
		{"//admin", "/admin", "/admin"},
		{"/a///b//", "/a/b/", "/a/b/"},
		{"/public/../admin", "/admin", "/admin"},
		{"/public/..%2Fadmin", "/admin", "/admin"},
		{"/public%2F..%2Fadmin", "/admin", "/admin"},
		{"/%2e%2e/admin", "/admin", "/admin"},
		{"/public/%2E%2E/admin", "/admin", "/admin"},
		{"/a/./b/.", "/a/b/", "/a/b/"},
		{"/a/b/..", "/a/", "/a/"},
		{"/../../etc/passwd", "/etc/passwd", "/etc/passwd"},
		{"/a%5c..%5cadmin", "/admin", "/admin"},
		{"/%61dmin", "/admin", "/admin"},
		{"/a%3fb", "/a?b", "/a%3Fb"},
		{"/a%20b", "/a b", "/a%20b"},
		{"/caf%c3%a9", "/café", "/caf%C3%A9"},
		{"/x?q=/../y", "/x", "/x"},
	} {
		r, err := http.NewRequest("GET", "http://h"+tc.target, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		if !NormalizePath(r) {
			t.Errorf("%s: refused", tc.target)
			continue
		}
		if r.URL.Path != tc.path || r.URL.EscapedPath() != tc.raw {
			t.Errorf("%s: path %q escaped %q, want %q %q", tc.target, r.URL.Path, r.URL.EscapedPath(), tc.path, tc.raw)
		}
	}
	r, _ := http.NewRequest("OPTIONS", "http://h", nil)
	r.URL.Path = "*"
	if !NormalizePath(r) || r.URL.Path != "*" {
		t.Errorf("OPTIONS * changed to %q", r.URL.Path)
	}
}
