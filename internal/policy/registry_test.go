package policy_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/policy"
)

func TestRegistry(t *testing.T) {
	if got := policy.Names(); !slices.Equal(got, []string{"shoal", "docker-machine", "taskscaler", "static"}) {
		t.Errorf("Names() = %v", got)
	}
	for _, name := range policy.Names() {
		e, _ := policy.Lookup(name)
		g := e.Grid()
		if len(g) < 3 {
			t.Errorf("%s: grid of %d settings is too small to compare", name, len(g))
		}
		seen := map[string]bool{}
		for _, p := range g {
			pol, err := policy.ByName(name, p)
			if err != nil {
				t.Errorf("%s grid %v: %v", name, p, err)
				continue
			}
			if pol.Name() != name || pol.Params().String() != p.String() {
				t.Errorf("%s: built %s with %v", name, pol.Name(), pol.Params())
			}
			if seen[p.String()] {
				t.Errorf("%s: grid repeats %v", name, p)
			}
			seen[p.String()] = true
		}
	}
	if e, _ := policy.Lookup("docker-machine"); len(e.Grid()) != 24 {
		t.Errorf("docker-machine grid: %d settings, want 6 idle counts × 2 idle times × 2 growth rates", len(e.Grid()))
	}
}

func TestByNameErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params policy.Params
		want   []string
	}{
		{"kubernetes", nil, []string{`unknown policy "kubernetes"`, "shoal, docker-machine, taskscaler, static"}},
		{"docker-machine", policy.Params{"IdleCount": 1, "idle_count": -1},
			[]string{`unknown parameter "IdleCount"`, "idle_count must be at least 0"}},
		{"static", policy.Params{"max_instances": 0}, []string{"max_instances must be at least 1"}},
	} {
		_, err := policy.ByName(tc.name, tc.params)
		if err == nil {
			t.Errorf("%s %v: no error", tc.name, tc.params)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %v: %q should contain %q", tc.name, tc.params, err, w)
			}
		}
	}
	if s := (policy.Params{"idle_time": 600, "idle_count": 2}).String(); s != "idle_count=2 idle_time=600" {
		t.Errorf("Params.String() = %q", s)
	}
}

// randomPool makes a pool in a random but plausible state.
func randomPool(r *rand.Rand, now time.Time) policy.Pool {
	s := settings(func(s *config.Settings) {
		s.CapacityPerInstance = 1 + r.IntN(4)
		s.MaxInstances = 1 + r.IntN(30)
		s.MinInstances = r.IntN(3)
		s.IdleCount = r.IntN(4)
		s.IdleTime = time.Duration(r.IntN(1200)) * time.Second
	})
	s.MinInstances = min(s.MinInstances, s.MaxInstances)
	p := policy.Pool{Settings: s}
	for i := range r.IntN(40) {
		p.Pending = append(p.Pending, policy.Job{ID: int64(i), Tags: []string{"docker"}, QueuedAt: now.Add(-time.Duration(r.IntN(600)) * time.Second)})
	}
	for i := range r.IntN(5) {
		p.Waiting = append(p.Waiting, policy.Job{ID: int64(1000 + i), QueuedAt: now})
	}
	for i := range r.IntN(s.MaxInstances + 3) {
		created := now.Add(-time.Duration(30+r.IntN(3*3600)) * time.Second)
		d := policy.Droplet{ID: i + 1, CreatedAt: created}
		switch r.IntN(4) {
		case 0:
			d.State = policy.Booting
		case 1:
			d.State = policy.Draining
		default:
			d.State = policy.Ready
		}
		if d.State != policy.Booting {
			d.ReadyAt = created.Add(time.Duration(40+r.IntN(60)) * time.Second)
			if d.ReadyAt.After(now) {
				d.ReadyAt = now
			}
			d.RunningJobs = r.IntN(s.CapacityPerInstance + 1)
			d.JobsDone = r.IntN(3)
			if d.JobsDone > 0 {
				d.LastJobFinishedAt = d.ReadyAt.Add(time.Duration(r.Int64N(int64(now.Sub(d.ReadyAt)) + 1)))
			}
		}
		p.Droplets = append(p.Droplets, d)
	}
	return p
}

// TestNeverKillAJob checks, for every policy and many random fleets, the
// rules every decision must keep: delete only a drained Droplet with no
// running jobs or an idle ready one, drain only ready ones,
// at most one decision per Droplet, and never create past max_instances.
func TestNeverKillAJob(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	now := t0
	for _, name := range policy.Names() {
		e, _ := policy.Lookup(name)
		for _, params := range append(e.Grid(), nil) {
			pol, err := policy.ByName(name, params)
			if err != nil {
				t.Fatal(err)
			}
			var st policy.State
			for round := range 40 {
				billing := config.BillingPerSecond
				if round%3 == 0 {
					billing = config.BillingHourly
				}
				s := policy.Snapshot{Now: now.Add(time.Duration(round) * time.Minute), Billing: billing}
				s.Pools = []policy.Pool{randomPool(r, s.Now)}
				var ds []policy.Decision
				ds, st = pol.Decide(s, st)
				checkDecisions(t, fmt.Sprintf("%s %v round %d", name, params, round), pol, s.Pools[0], ds)
				if name != "shoal" {
					// The GitLab Runner originals know nothing of billing.
					other := s
					other.Billing = config.BillingHourly
					if billing == config.BillingHourly {
						other.Billing = config.BillingPerSecond
					}
					if ds2, _ := pol.Decide(other, st); summary(ds2) != summary(ds) {
						t.Errorf("%s %v: billing model changed decisions: %q vs %q", name, params, summary(ds), summary(ds2))
					}
				}
			}
		}
	}
}

func checkDecisions(t *testing.T, ctx string, pol policy.Policy, p policy.Pool, ds []policy.Decision) {
	t.Helper()
	byID := map[int]policy.Droplet{}
	for _, d := range p.Droplets {
		byID[d.ID] = d
	}
	touched := map[int]bool{}
	created := 0
	for _, d := range ds {
		if d.Reason == "" {
			t.Errorf("%s: no reason: %+v", ctx, d)
		}
		if d.Pool != p.Settings.Pool {
			t.Errorf("%s: wrong pool: %+v", ctx, d)
		}
		if d.Kind == policy.Create {
			if d.Count <= 0 {
				t.Errorf("%s: create %d", ctx, d.Count)
			}
			created += d.Count
			continue
		}
		dr, ok := byID[d.DropletID]
		if !ok {
			t.Errorf("%s: decision on unknown droplet: %+v", ctx, d)
			continue
		}
		if touched[d.DropletID] {
			t.Errorf("%s: two decisions on droplet %d", ctx, d.DropletID)
		}
		touched[d.DropletID] = true
		switch d.Kind {
		case policy.Delete:
			drained := dr.State == policy.Draining && dr.RunningJobs == 0
			idle := dr.State == policy.Ready && dr.RunningJobs == 0
			if !drained && !idle {
				t.Errorf("%s: deletes droplet %+v: %s", ctx, dr, d.Reason)
			}
		case policy.Drain:
			if dr.State != policy.Ready {
				t.Errorf("%s: drains a %s droplet", ctx, dr.State)
			}
		}
	}
	limit := pol.Acceptance(p.Settings)
	maxInst := p.Settings.MaxInstances
	if pm, ok := pol.Params()["max_instances"]; ok {
		maxInst = int(pm)
	}
	if created > 0 && len(p.Droplets)+created > maxInst {
		t.Errorf("%s: creates %d with %d existing, max %d (acceptance %+v)", ctx, created, len(p.Droplets), maxInst, limit)
	}
}
