package clock

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Virtual is a clock that moves only when told to. Timers due at the same instant
// fire in the order they were armed, so a replay is deterministic.
type Virtual struct {
	mu      sync.Mutex
	now     time.Time
	seq     uint64
	pending timerHeap
	changed *sync.Cond // signalled whenever a timer is armed, for WaitForTimers
}

var _ Clock = (*Virtual)(nil)

// NewVirtual returns a virtual clock that reads start until advanced.
func NewVirtual(start time.Time) *Virtual {
	v := &Virtual{now: start}
	v.changed = sync.NewCond(&v.mu)
	return v
}

func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

func (v *Virtual) Since(t time.Time) time.Duration { return v.Now().Sub(t) }

func (v *Virtual) NewTimer(d time.Duration) Timer {
	t := &vTimer{clock: v, ch: make(chan time.Time, 1)}
	v.arm(t, d)
	return t
}

func (v *Virtual) AfterFunc(d time.Duration, f func()) Timer {
	t := &vTimer{clock: v, fn: f}
	v.arm(t, d)
	return t
}

func (v *Virtual) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &vTimer{clock: v, ch: make(chan time.Time, 1), period: d}
	v.arm(t, d)
	return (*vTicker)(t)
}

func (v *Virtual) Sleep(ctx context.Context, d time.Duration) error {
	t := v.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Advance moves the clock forward by d, firing every timer that falls due on the
// way, each with the clock set to its deadline. AfterFunc callbacks run on the
// calling goroutine, outside the clock's lock, so they may use the clock.
func (v *Virtual) Advance(d time.Duration) { v.AdvanceTo(v.Now().Add(d)) }

// AdvanceTo moves the clock to t (never backwards), firing timers due up to t.
func (v *Virtual) AdvanceTo(t time.Time) {
	for v.fireNext(t) {
	}
	v.mu.Lock()
	if t.After(v.now) {
		v.now = t
	}
	v.mu.Unlock()
}

// Next reports the deadline of the earliest pending timer.
func (v *Virtual) Next() (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.pending) == 0 {
		return time.Time{}, false
	}
	return v.pending[0].when, true
}

// Pending reports how many timers and tickers are armed.
func (v *Virtual) Pending() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.pending)
}

// WaitForTimers blocks until at least n timers are armed or ctx is done: a test
// uses it to know that a goroutine has reached its Sleep before advancing.
func (v *Virtual) WaitForTimers(ctx context.Context, n int) error {
	stop := context.AfterFunc(ctx, func() {
		v.mu.Lock()
		v.changed.Broadcast()
		v.mu.Unlock()
	})
	defer stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for len(v.pending) < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		v.changed.Wait()
	}
	return nil
}

// fireNext fires the earliest timer due at or before limit and reports whether it did.
func (v *Virtual) fireNext(limit time.Time) bool {
	v.mu.Lock()
	if len(v.pending) == 0 || v.pending[0].when.After(limit) {
		v.mu.Unlock()
		return false
	}
	t := heap.Pop(&v.pending).(*vTimer)
	t.index = -1
	if t.when.After(v.now) {
		v.now = t.when
	}
	now := v.now
	if t.period > 0 {
		v.push(t, now.Add(t.period))
	}
	v.mu.Unlock()

	if t.fn != nil {
		t.fn()
		return true
	}
	select { // like time.Timer: a reader that has not taken the last value misses this one
	case t.ch <- now:
	default:
	}
	return true
}

func (v *Virtual) arm(t *vTimer, d time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.push(t, v.now.Add(max(d, 0)))
}

// push must be called with v.mu held.
func (v *Virtual) push(t *vTimer, when time.Time) {
	v.seq++
	t.when, t.seq = when, v.seq
	heap.Push(&v.pending, t)
	v.changed.Broadcast()
}

// remove must be called with v.mu held; it reports whether t was pending.
func (v *Virtual) remove(t *vTimer) bool {
	if t.index < 0 {
		return false
	}
	heap.Remove(&v.pending, t.index)
	t.index = -1
	return true
}

type vTimer struct {
	clock  *Virtual
	ch     chan time.Time
	fn     func()
	period time.Duration // > 0 for tickers
	when   time.Time
	seq    uint64
	index  int // in the heap; -1 when not pending
}

func (t *vTimer) C() <-chan time.Time { return t.ch }

func (t *vTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	return t.clock.remove(t)
}

func (t *vTimer) Reset(d time.Duration) bool {
	v := t.clock
	v.mu.Lock()
	defer v.mu.Unlock()
	was := v.remove(t)
	v.push(t, v.now.Add(max(d, 0)))
	return was
}

type vTicker vTimer

func (t *vTicker) C() <-chan time.Time { return t.ch }
func (t *vTicker) Stop()               { (*vTimer)(t).Stop() }
func (t *vTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock: non-positive interval for Ticker.Reset")
	}
	v := t.clock
	v.mu.Lock()
	defer v.mu.Unlock()
	v.remove((*vTimer)(t))
	t.period = d
	v.push((*vTimer)(t), v.now.Add(d))
}

// timerHeap orders timers by deadline, then by arming order.
type timerHeap []*vTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*vTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

// SelfAdvancing is a Virtual clock whose Sleep moves the clock forward itself
// (firing whatever falls due on the way) instead of waiting for someone else
// to: for a single-threaded simulation, where the sleeper is the one who would
// advance the clock, so that a retry's back-off passes in virtual time.
type SelfAdvancing struct{ *Virtual }

func (s SelfAdvancing) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.Advance(d)
	return nil
}
