package nodetest

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test with what after
// timeout. It is for conditions that real sockets or another process make
// true; code whose timing a test controls uses testing/synctest instead.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
