package policy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/policy"
)

// t0 is a Monday, 10:00 UTC.
var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func settings(mut func(*config.Settings)) config.Settings {
	p := config.DefaultPool("docker")
	p.Tags = []string{"docker"}
	p.MaxInstances = 100
	s := p.Effective(t0)
	if mut != nil {
		mut(&s)
	}
	return s
}

func jobs(n int, at time.Time) []policy.Job {
	out := make([]policy.Job, n)
	for i := range out {
		out[i] = policy.Job{ID: int64(i + 1), Tags: []string{"docker"}, QueuedAt: at}
	}
	return out
}

// idleDroplet is ready, has done jobs, and has been idle for idle.
func idleDroplet(id int, idle time.Duration) policy.Droplet {
	created := t0.Add(-idle - 10*time.Minute)
	return policy.Droplet{ID: id, State: policy.Ready, CreatedAt: created, ReadyAt: created.Add(90 * time.Second),
		LastJobFinishedAt: t0.Add(-idle), JobsDone: 3}
}

func busyDroplet(id, running int) policy.Droplet {
	d := idleDroplet(id, 20*time.Minute)
	d.RunningJobs = running
	return d
}

func booting(id int) policy.Droplet {
	return policy.Droplet{ID: id, State: policy.Booting, CreatedAt: t0.Add(-20 * time.Second)}
}

// shoalDecides is shoal's policy deciding for one docker pool of up to 300
// Droplets, billed per second, with these pending jobs and Droplets.
func shoalDecides() func(st policy.State, at time.Time, pending []policy.Job, ds ...policy.Droplet) ([]policy.Decision, policy.State) {
	pol := policy.NewShoal()
	set := settings(nil)
	set.MaxInstances = 300
	return func(st policy.State, at time.Time, pending []policy.Job, ds ...policy.Droplet) ([]policy.Decision, policy.State) {
		return pol.Decide(policy.Snapshot{Now: at, Billing: config.BillingPerSecond,
			Pools: []policy.Pool{{Settings: set, Pending: pending, Droplets: ds}}}, st)
	}
}

func snap(billing config.BillingModel, pools ...policy.Pool) policy.Snapshot {
	return policy.Snapshot{Now: t0, Billing: billing, Pools: pools}
}

func mustPolicy(t testing.TB, name string, p policy.Params) policy.Policy {
	t.Helper()
	pol, err := policy.ByName(name, p)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// summary renders decisions compactly for comparison: "create docker 3",
// "drain 7", "delete 9", in order.
func summary(ds []policy.Decision) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		if d.Kind == policy.Create {
			parts[i] = fmt.Sprintf("create %s %d", d.Pool, d.Count)
		} else {
			parts[i] = fmt.Sprintf("%s %d", d.Kind, d.DropletID)
		}
	}
	return strings.Join(parts, ", ")
}

type decideCase struct {
	name    string
	policy  string
	params  policy.Params
	billing config.BillingModel
	pool    policy.Pool
	want    string
	// reason, if set, must appear in the first decision's Reason.
	reason string
}

func runCases(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol := mustPolicy(t, tc.policy, tc.params)
			billing := tc.billing
			if billing == "" {
				billing = config.BillingPerSecond
			}
			ds, _ := pol.Decide(snap(billing, tc.pool), policy.State{})
			if got := summary(ds); got != tc.want {
				t.Errorf("decisions = %q, want %q\n%v", got, tc.want, ds)
			}
			for _, d := range ds {
				if d.Reason == "" {
					t.Errorf("decision without a reason: %+v", d)
				}
			}
			if tc.reason != "" && (len(ds) == 0 || !strings.Contains(ds[0].Reason, tc.reason)) {
				t.Errorf("first reason should mention %q: %v", tc.reason, ds)
			}
		})
	}
}
