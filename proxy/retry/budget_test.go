package retry

import (
	"testing"
	"time"
)

func TestBudgetStopsAtRatioPlusMinimum(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBudget(0.1, 1) // 10s window: 10 from the minimum + 10% of requests
	b.nowFunc = func() time.Time { return now }
	for range 100 {
		b.Request()
	}
	allowed := 0
	for range 1000 {
		if b.TryRetry() {
			allowed++
		}
	}
	if allowed != 20 {
		t.Fatalf("allowed %d retries, want 20 (10 minimum + 10%% of 100)", allowed)
	}
	// After the window has passed, the budget is fresh again.
	now = now.Add(11 * time.Second)
	if !b.TryRetry() {
		t.Fatal("budget did not refill after the window")
	}
}

func TestBackoffBounded(t *testing.T) {
	for a := 1; a < 30; a++ {
		d := Backoff(a, 10*time.Millisecond, 80*time.Millisecond)
		if d <= 0 || d > 80*time.Millisecond {
			t.Fatalf("attempt %d: backoff %v out of (0, 80ms]", a, d)
		}
	}
}
