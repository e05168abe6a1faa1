package policy_test

import (
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/policy"
)

// replayBurst is a tiny discrete model (no emulators) of one pool: every 10 s
// the policy decides and its decisions apply at once; a Droplet is ready 60 s
// after its create; runners take jobs as the policy's Acceptance says; jobs
// run longer than the test. It returns how long until every job started and
// the largest single Create.
func replayBurst(t *testing.T, pol policy.Policy, set config.Settings, n int) (time.Duration, int) {
	t.Helper()
	const step = 10 * time.Second
	const boot = 60 * time.Second
	acc := pol.Acceptance(set)
	pending := jobs(n, t0)
	var waiting []policy.Job
	var ds []policy.Droplet
	var st policy.State
	nextID, biggest := 1, 0
	for now := t0; now.Before(t0.Add(2 * time.Hour)); now = now.Add(step) {
		for i := range ds {
			if ds[i].State == policy.Booting && now.Sub(ds[i].CreatedAt) >= boot {
				ds[i].State, ds[i].ReadyAt = policy.Ready, now
			}
		}
		// Runners take jobs: waiting ones first, then pending ones.
		if acc.Mode == policy.AcceptThenProvision {
			held := len(waiting)
			for i := range ds {
				held += ds[i].RunningJobs
			}
			for len(pending) > 0 && held < acc.Limit {
				waiting, pending, held = append(waiting, pending[0]), pending[1:], held+1
			}
		}
		for i := range ds {
			for ds[i].State == policy.Ready && ds[i].RunningJobs < acc.SlotsPerDroplet {
				if len(waiting) > 0 {
					waiting = waiting[1:]
				} else if len(pending) > 0 && acc.Mode == policy.AcceptOnFreeSlot {
					pending = pending[1:]
				} else {
					break
				}
				ds[i].RunningJobs++
			}
		}
		if len(pending) == 0 && len(waiting) == 0 {
			return now.Sub(t0), biggest
		}
		var dec []policy.Decision
		dec, st = pol.Decide(policy.Snapshot{Now: now, Billing: config.BillingPerSecond,
			Pools: []policy.Pool{{Settings: set, Pending: pending, Waiting: waiting, Droplets: ds}}}, st)
		for _, d := range dec {
			if d.Kind == policy.Create {
				biggest = max(biggest, d.Count)
				for range d.Count {
					ds = append(ds, policy.Droplet{ID: nextID, State: policy.Booting, CreatedAt: now})
					nextID++
				}
			}
		}
	}
	t.Fatalf("%s %v: jobs still waiting after 2h", pol.Name(), pol.Params())
	return 0, 0
}

func TestBurstOf30(t *testing.T) {
	set := settings(func(s *config.Settings) { s.MaxInstances = 50 })
	tests := []struct {
		policy     string
		params     policy.Params
		capacity   int
		maxWait    time.Duration
		minWait    time.Duration
		maxBiggest int
		minBiggest int
	}{
		// shoal asks for all 30 at once: one boot and one step.
		{"shoal", nil, 1, 70 * time.Second, 0, 50, 30},
		{"shoal", nil, 4, 70 * time.Second, 0, 50, 8},
		// docker+machine trickles: two machines at a time, each taken at once.
		{"docker-machine", policy.Params{"idle_count": 2, "max_growth_rate": 2}, 1, 2 * time.Hour, 10 * time.Minute, 2, 2},
		// IdleCount 0: every accepted job creates its own machine: one boot.
		{"docker-machine", nil, 1, 70 * time.Second, 0, 30, 30},
		// taskscaler preemptive with idle_count 2: grows by the idle slots it
		// wants, a boot at a time.
		{"taskscaler", policy.Params{"idle_count": 2}, 1, 2 * time.Hour, 10 * time.Minute, 2, 2},
	}
	for _, tc := range tests {
		s := set
		s.CapacityPerInstance = tc.capacity
		pol := mustPolicy(t, tc.policy, tc.params)
		took, biggest := replayBurst(t, pol, s, 30)
		t.Logf("%s %v capacity %d: all 30 started after %s; largest create %d", tc.policy, tc.params, tc.capacity, took, biggest)
		if took > tc.maxWait || took < tc.minWait {
			t.Errorf("%s %v: all started after %s, want within [%s, %s]", tc.policy, tc.params, took, tc.minWait, tc.maxWait)
		}
		if biggest > tc.maxBiggest || biggest < tc.minBiggest {
			t.Errorf("%s %v: largest create %d, want within [%d, %d]", tc.policy, tc.params, biggest, tc.minBiggest, tc.maxBiggest)
		}
	}
}
