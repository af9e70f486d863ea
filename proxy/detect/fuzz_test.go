package detect

import "testing"

// FuzzDetect checks Classify never panics and is stable: once a prefix gives
// a definite answer, every longer input starting with it gives the same one.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\n", "POST", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "PRI * HT",
		"\x16\x03\x01\x00\xa5\x01", "\x16", "SSH-2.0-x", "\x00\x00\x00\x08\x04\xd2\x16\x2f", "",
		"CONNECT host:443 HTTP/1.1", "DELET", "OPTIONS",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		full := Classify(b)
		for i := 0; i <= len(b); i++ {
			if p := Classify(b[:i]); p != Unknown {
				if p != full {
					t.Fatalf("prefix %q -> %v but full %q -> %v", b[:i], p, b, full)
				}
				break
			}
		}
		if len(b) >= MaxPeek && full == Unknown {
			t.Fatalf("undecided after %d bytes: %q", len(b), b)
		}
	})
}
