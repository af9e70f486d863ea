//go:build race

package dataplane

// raceDetector: the race detector's instrumentation allocates on its own, so allocation counts
// taken under it are not the proxy's (make proxy-test runs this package with -race).
const raceDetector = true
