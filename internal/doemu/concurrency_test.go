package doemu_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/shoalci/shoal/internal/doemu"
)

// TestConcurrentClients runs creates, lists, actions and deletes from many
// goroutines at once (under -race) and checks the account adds up afterwards.
func TestConcurrentClients(t *testing.T) {
	f := newFixture(t, doemu.Options{RateLimitPerMinute: -1, RateLimitPerHour: -1, BootDelay: doemu.Range{Min: time.Second}})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				req := runnerRequest(fmt.Sprintf("w%d-%d", w, i))
				d, _, err := f.do.Droplets.Create(f.ctx, req)
				if err != nil {
					errs <- err
					return
				}
				if _, _, err := f.do.Droplets.ListByTag(f.ctx, "shoal", &godo.ListOptions{PerPage: 7}); err != nil {
					errs <- err
					return
				}
				if i%2 == 0 {
					if _, err := f.do.Droplets.Delete(f.ctx, d.ID); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	stop := make(chan struct{})
	go func() { // the clock moves while they work
		for {
			select {
			case <-stop:
				return
			default:
				f.clock.Advance(100 * time.Millisecond)
			}
		}
	}()
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, resp, err := f.do.Droplets.List(f.ctx, nil)
	if err != nil || resp.Meta.Total != 8*2 {
		t.Fatalf("total %d, want 16 (8 workers keep 2 of 5 each): %v", resp.Meta.Total, err)
	}
	if n := len(f.emu.Charges()); n != 40 {
		t.Fatalf("ledger has %d charges, want one per Droplet ever created (40)", n)
	}
}

func TestInjectedLatencyWaitsOnTheClock(t *testing.T) {
	f := newFixture(t, doemu.Options{Faults: doemu.Faults{Latency: doemu.Range{Min: 2 * time.Second}}})
	done := make(chan error, 1)
	go func() {
		_, _, err := f.do.Account.Get(f.ctx)
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal("the request never started waiting out its latency")
	}
	select {
	case <-done:
		t.Fatal("answered before its latency passed on the clock")
	case <-time.After(20 * time.Millisecond):
	}
	f.clock.Advance(2 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
