package clock_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/clock"
)

var epoch = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC) // a Monday

func TestVirtualFiresInDeadlineOrderWithClockAtDeadline(t *testing.T) {
	v := clock.NewVirtual(epoch)
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+v.Since(epoch).String()) }
	}
	v.AfterFunc(3*time.Second, at("c"))
	v.AfterFunc(time.Second, at("a"))
	v.AfterFunc(time.Second, at("b")) // same deadline: arming order
	stopped := v.AfterFunc(2*time.Second, at("never"))
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	v.Advance(2 * time.Second)
	if want := []string{"a@1s", "b@1s"}; !slices.Equal(got, want) {
		t.Fatalf("after 2s fired %v, want %v", got, want)
	}
	if v.Since(epoch) != 2*time.Second {
		t.Fatalf("clock reads %v after Advance(2s)", v.Since(epoch))
	}
	v.Advance(time.Hour)
	if want := []string{"a@1s", "b@1s", "c@3s"}; !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
}

func TestVirtualCallbackCanScheduleWithinSameAdvance(t *testing.T) {
	v := clock.NewVirtual(epoch)
	var fired []time.Duration
	var chain func()
	chain = func() {
		fired = append(fired, v.Since(epoch))
		if len(fired) < 5 {
			v.AfterFunc(10*time.Second, chain)
		}
	}
	v.AfterFunc(10*time.Second, chain)
	v.Advance(35 * time.Second)
	if want := []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second}; !slices.Equal(fired, want) {
		t.Fatalf("fired at %v, want %v", fired, want)
	}
	if next, ok := v.Next(); !ok || next.Sub(epoch) != 40*time.Second {
		t.Fatalf("Next = %v, %v; want 40s", next.Sub(epoch), ok)
	}
}

func TestVirtualTimerAndTicker(t *testing.T) {
	v := clock.NewVirtual(epoch)
	timer := v.NewTimer(5 * time.Second)
	ticker := v.NewTicker(2 * time.Second)
	v.Advance(4 * time.Second)
	select {
	case <-timer.C():
		t.Fatal("timer fired early")
	default:
	}
	// Two ticks are due but the channel holds one: the slow reader misses one, as with time.Ticker.
	if got := (<-ticker.C()).Sub(epoch); got != 2*time.Second {
		t.Fatalf("first tick at %v, want 2s", got)
	}
	v.Advance(time.Second)
	if got := (<-timer.C()).Sub(epoch); got != 5*time.Second {
		t.Fatalf("timer fired at %v, want 5s", got)
	}
	if timer.Reset(time.Second) {
		t.Fatal("Reset of a fired timer reported it pending")
	}
	ticker.Stop()
	v.Advance(10 * time.Second)
	if got := (<-timer.C()).Sub(epoch); got != 6*time.Second {
		t.Fatalf("reset timer fired at %v, want 6s", got)
	}
	select {
	case <-ticker.C():
		t.Fatal("stopped ticker ticked")
	default:
	}
	if v.Pending() != 0 {
		t.Fatalf("%d timers pending, want 0", v.Pending())
	}
}

func TestVirtualSleepWakesOnAdvanceOrCancel(t *testing.T) {
	v := clock.NewVirtual(epoch)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- v.Sleep(ctx, time.Minute) }()
	if err := v.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	v.Advance(time.Minute)
	if err := <-done; err != nil {
		t.Fatalf("Sleep returned %v", err)
	}

	sleepCtx, stop := context.WithCancel(ctx)
	go func() { done <- v.Sleep(sleepCtx, time.Minute) }()
	if err := v.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != context.Canceled {
		t.Fatalf("cancelled Sleep returned %v", err)
	}
}

func TestRealClockSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (clock.Real{}).Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a done context returned %v", err)
	}
	if err := (clock.Real{}).Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestSelfAdvancingSleepMovesTheClock(t *testing.T) {
	v := clock.NewVirtual(epoch)
	fired := false
	v.AfterFunc(time.Second, func() { fired = true })
	var c clock.Clock = clock.SelfAdvancing{Virtual: v}
	if err := c.Sleep(context.Background(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if !fired || c.Since(epoch) != 2*time.Second {
		t.Fatalf("after Sleep(2s): fired %v, clock at %v", fired, c.Since(epoch))
	}
}
