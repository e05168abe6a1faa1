// Package clock injects time: a real clock for production and a virtual clock that
// a simulator or a test advances by hand, so a week of CI replays in seconds and
// the same inputs always give the same outputs.
package clock

import (
	"context"
	"time"
)

// Clock is the source of time for everything that schedules or measures.
type Clock interface {
	Now() time.Time
	Since(t time.Time) time.Duration
	// NewTimer fires once, after d, on its channel.
	NewTimer(d time.Duration) Timer
	// NewTicker fires every d on its channel, dropping ticks a slow reader misses.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f after d. On a virtual clock f runs inside Advance, in
	// deadline order, which is what makes simulations deterministic.
	AfterFunc(d time.Duration, f func()) Timer
	// Sleep waits d, or until ctx is done, and returns ctx's error in that case.
	Sleep(ctx context.Context, d time.Duration) error
}

// Timer is a one-shot timer. C is nil for timers made by AfterFunc.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was still pending.
	Stop() bool
	// Reset re-arms the timer to fire after d; it reports whether it was still pending.
	Reset(d time.Duration) bool
}

// Ticker delivers ticks at an interval.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}
