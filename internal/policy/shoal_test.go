package policy_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/tags"
)

// noWarm isolates the queue-driven part of shoal's policy.
var noWarm = policy.Params{"warm": 0}

func TestShoalDecide(t *testing.T) {
	cap4 := func(s *config.Settings) { s.CapacityPerInstance = 4 }
	hourlyIdle := func(id int, age, idle time.Duration) policy.Droplet {
		created := t0.Add(-age)
		return policy.Droplet{ID: id, State: policy.Ready, CreatedAt: created, ReadyAt: created.Add(90 * time.Second),
			LastJobFinishedAt: t0.Add(-idle), JobsDone: 1}
	}
	runCases(t, []decideCase{
		{name: "scale from zero, one job", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(nil), Pending: jobs(1, t0)}, want: "create docker 1", reason: "1 pending"},
		{name: "scale from zero, capacity 4", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(cap4), Pending: jobs(5, t0)}, want: "create docker 2"},
		{name: "30-job burst asks for all at once", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(nil), Pending: jobs(30, t0)}, want: "create docker 30"},
		{name: "booting slots count: no second ask", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(nil), Pending: jobs(30, t0), Droplets: func() []policy.Droplet {
				var ds []policy.Droplet
				for i := range 30 {
					ds = append(ds, booting(i+1))
				}
				return ds
			}()}, want: ""},
		{name: "burst capped by max_instances", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.MaxInstances = 10 }), Pending: jobs(30, t0),
				Droplets: []policy.Droplet{busyDroplet(1, 1)}},
			want: "create docker 9", reason: "capped by max_instances 10 (1 exist)"},
		{name: "min_instances from zero", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.MinInstances = 2 })}, want: "create docker 2", reason: "min_instances is 2"},
		{name: "min_instances kept when idle", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.MinInstances = 2 }),
				Droplets: []policy.Droplet{idleDroplet(1, time.Hour), idleDroplet(2, time.Hour), idleDroplet(3, time.Hour)}},
			want: "delete 1"},
		{name: "idle_count is a floor on spare slots", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.IdleCount = 3; s.CapacityPerInstance = 2 })},
			want: "create docker 2"},
		{name: "scale to zero with capacity 4", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{idleDroplet(1, time.Hour), idleDroplet(2, time.Hour)}},
			want: "delete 1, delete 2", reason: "idle 1h0m0s"},
		{name: "drained droplets are deleted once their jobs end", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{
				{ID: 1, State: policy.Draining, RunningJobs: 0, JobsDone: 4},
				{ID: 2, State: policy.Draining, RunningJobs: 1, JobsDone: 4}}},
			want: "delete 1", reason: "drained"},
		{name: "drain the least loaded so a whole droplet frees up", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.CapacityPerInstance = 4; s.IdleCount = 3 }),
				Droplets: []policy.Droplet{busyDroplet(1, 3), busyDroplet(2, 1), busyDroplet(3, 2)}},
			want: "drain 2", reason: "least loaded (1 of 4 slots busy)"},
		{name: "no busy drain while jobs are pending", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(cap4), Pending: jobs(1, t0),
				Droplets: []policy.Droplet{busyDroplet(1, 1), busyDroplet(2, 1)}},
			want: ""},
		{name: "per-second: idle shorter than a boot is kept", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{idleDroplet(1, 30*time.Second)}}, want: ""},
		{name: "per-second: idle longer than a boot is released", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{idleDroplet(1, 100*time.Second)}},
			want: "delete 1", reason: "billed per second"},
		{name: "per-second: idle_time shorter than a boot wins", policy: "shoal", params: noWarm,
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.IdleTime = 20 * time.Second }),
				Droplets: []policy.Droplet{idleDroplet(1, 30*time.Second)}}, want: "delete 1"},
		{name: "per-second: inside the 60 s minimum nothing is saved", policy: "shoal", params: policy.Params{"warm": 0, "linger": 1},
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{{ID: 1, State: policy.Ready,
				CreatedAt: t0.Add(-40 * time.Second), ReadyAt: t0.Add(-30 * time.Second)}}}, want: ""},
		{name: "hourly: idle but paid for 40 more minutes: kept", policy: "shoal", params: noWarm, billing: config.BillingHourly,
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{hourlyIdle(1, 20*time.Minute, 15*time.Minute)}}, want: ""},
		{name: "hourly: released just before the paid hour ends", policy: "shoal", params: noWarm, billing: config.BillingHourly,
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{hourlyIdle(1, 59*time.Minute, 15*time.Minute)}},
			want: "delete 1", reason: "paid hour ends in 1m0s"},
		{name: "hourly: second hour counts too", policy: "shoal", params: noWarm, billing: config.BillingHourly,
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{
				hourlyIdle(1, 90*time.Minute, 15*time.Minute), hourlyIdle(2, 119*time.Minute, 15*time.Minute)}},
			want: "delete 2"},
		{name: "hourly: busy droplets are not drained", policy: "shoal", params: noWarm, billing: config.BillingHourly,
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{busyDroplet(1, 1)}}, want: ""},
	})
}

func TestShoalBootsForTheNextStage(t *testing.T) {
	docker := settings(nil)
	large := settings(func(s *config.Settings) { s.Pool = "large"; s.Tags = []string{"docker", "large"} })
	created := func(n int, at time.Time, tags ...string) []policy.Job {
		out := make([]policy.Job, n)
		for i := range out {
			out[i] = policy.Job{ID: int64(100 + i), Tags: tags, CreatedAt: at}
		}
		return out
	}
	// Three docker tests run; what comes next varies.
	busy := []policy.Droplet{busyDroplet(1, 1), busyDroplet(2, 1), busyDroplet(3, 1)}
	for _, tc := range []struct {
		name   string
		params policy.Params
		pools  []policy.Pool
		want   string
	}{
		{"a large build after docker tests boots its Droplet while they run", noWarm, []policy.Pool{
			{Settings: docker, Droplets: busy},
			{Settings: large, Upcoming: created(1, t0, "docker", "large")},
		}, "create large 1"},
		{"a next stage no wider than the running jobs needs nothing: their runners free up", noWarm, []policy.Pool{
			{Settings: docker, Droplets: busy, Upcoming: created(2, t0, "docker")},
		}, ""},
		{"pending jobs give their slots back too: a new pipeline of 3 tests and 3 builds asks for 3", noWarm, []policy.Pool{
			{Settings: docker, Pending: jobs(3, t0), Upcoming: created(3, t0, "docker")},
		}, "create docker 3"},
		{"a wider next stage: the difference", noWarm, []policy.Pool{
			{Settings: docker, Droplets: busy[:1], Upcoming: created(3, t0, "docker")},
		}, "create docker 2"},
		{"an idle Droplet past its linger is kept for it, not drained", noWarm, []policy.Pool{
			{Settings: docker, Droplets: []policy.Droplet{busyDroplet(1, 1), idleDroplet(2, 100*time.Second)}, Upcoming: created(2, t0, "docker")},
		}, ""},
		{"without it that Droplet is released", noWarm, []policy.Pool{
			{Settings: docker, Droplets: []policy.Droplet{busyDroplet(1, 1), idleDroplet(2, 100*time.Second)}},
		}, "delete 2"},
		{"a created docker job listed in both pools counts in the docker one", noWarm, []policy.Pool{
			{Settings: large, Upcoming: created(1, t0, "docker")},
			{Settings: docker, Upcoming: created(1, t0, "docker")},
		}, "create docker 1"},
		{"jobs created long ago (a pipeline held at a manual job) count for nothing", noWarm, []policy.Pool{
			{Settings: large, Upcoming: created(1, t0.Add(-16*time.Minute), "docker", "large")},
		}, ""},
		{"upcoming_window 0 turns it off", policy.Params{"warm": 0, "upcoming_window": 0}, []policy.Pool{
			{Settings: large, Upcoming: created(1, t0, "docker", "large")},
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds, _ := mustPolicy(t, "shoal", tc.params).Decide(snap(config.BillingPerSecond, tc.pools...), policy.State{})
			if got := summary(ds); got != tc.want {
				t.Fatalf("%q, want %q\n%v", got, tc.want, ds)
			}
			if strings.HasPrefix(tc.want, "create") && !strings.Contains(ds[0].Reason, "for the next stages of running pipelines") {
				t.Errorf("reason should say why: %s", ds[0].Reason)
			}
		})
	}
}

func TestShoalPeriodOverride(t *testing.T) {
	cfg, err := config.Parse("p.toml", []byte(`
[[pool]]
name = "docker"
tags = ["docker"]
capacity_per_instance = 2
  [[pool.policy]]
  periods = ["* 8-17 * * mon-fri"]
  idle_count = 3
`))
	if err != nil {
		t.Fatal(err)
	}
	pol := mustPolicy(t, "shoal", noWarm)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0, "create docker 2"},                  // Monday 10:00: 3 spare slots
		{t0.Add(10 * time.Hour), ""},             // Monday 20:00
		{t0.Add(5*24*time.Hour + time.Hour), ""}, // Saturday 11:00
	} {
		s := policy.Snapshot{Now: tc.at, Billing: config.BillingPerSecond,
			Pools: []policy.Pool{{Settings: cfg.Pools[0].Effective(tc.at)}}}
		ds, _ := pol.Decide(s, policy.State{})
		if got := summary(ds); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.at, got, tc.want)
		}
	}
}

func TestShoalWarmFromArrivalRate(t *testing.T) {
	pol := mustPolicy(t, "shoal", policy.Params{"warm": 0.5})
	set := settings(nil)
	// 20 jobs arrive: 20/600 s⁻¹ decayed rate, 5 expected in the next boot
	// plus a minute (150 s), half of that (warm 0.5) kept warm: round(2.5) = 3.
	ds, st := pol.Decide(snap(config.BillingPerSecond, policy.Pool{Settings: set, Pending: jobs(20, t0.Add(-time.Second))}), policy.State{})
	if got := summary(ds); got != "create docker 23" {
		t.Fatalf("burst: %q, want create docker 23\n%v", got, ds)
	}
	if !strings.Contains(ds[0].Reason, "3 warm") || !strings.Contains(ds[0].Reason, "2.0 jobs/min recently") {
		t.Errorf("reason should explain the warm slots: %s", ds[0].Reason)
	}
	ps, ok := st.ShoalPool("docker")
	if !ok || math.Abs(ps.ArrivalsPerMinute-2) > 1e-9 || ps.Boot != 90*time.Second {
		t.Errorf("learned %+v, want 2 arrivals/min and a 90 s boot", ps)
	}

	// A minute later all 20 run and 3 ready Droplets idle: warm slots stay.
	later := t0.Add(time.Minute)
	var ds2 []policy.Droplet
	for i := range 23 {
		d := policy.Droplet{ID: i + 1, State: policy.Ready, CreatedAt: t0, ReadyAt: t0.Add(50 * time.Second)}
		if i < 20 {
			d.RunningJobs = 1
		}
		ds2 = append(ds2, d)
	}
	got, st2 := pol.Decide(policy.Snapshot{Now: later, Billing: config.BillingPerSecond,
		Pools: []policy.Pool{{Settings: set, Droplets: ds2}}}, st)
	if s := summary(got); s != "" {
		t.Errorf("a minute later: %q, want nothing (warm slots kept)", s)
	}
	// Two quiet hours later the rate has decayed: the idle ones go.
	quiet := later.Add(2 * time.Hour)
	for i := range ds2 {
		ds2[i].RunningJobs = 0
		ds2[i].JobsDone = 1
		ds2[i].LastJobFinishedAt = later.Add(10 * time.Minute)
	}
	got, _ = pol.Decide(policy.Snapshot{Now: quiet, Billing: config.BillingPerSecond,
		Pools: []policy.Pool{{Settings: set, Droplets: ds2}}}, st2)
	if n := strings.Count(summary(got), "delete"); n != 23 {
		t.Errorf("after two quiet hours: %q, want all 23 deleted", summary(got))
	}
}

func TestShoalLearnsTimeOfDay(t *testing.T) {
	day1 := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	decide := shoalDecides()
	// night returns the state after a night whose 02:00 brought n jobs (and,
	// at 10:37, an ordinary pipeline of 4), seen 5 s later and gone by 02:10.
	night := func(st policy.State, day int, n int) policy.State {
		at := day1.Add(time.Duration(day) * 24 * time.Hour)
		if n > 0 {
			_, st = decide(st, at.Add(5*time.Second), jobs(n, at))
		}
		_, st = decide(st, at.Add(10*time.Minute), nil)
		noise := at.Add(8*time.Hour + 37*time.Minute)
		_, st = decide(st, noise.Add(5*time.Second), jobs(4, noise))
		_, st = decide(st, noise.Add(10*time.Minute), nil)
		return st
	}
	tests := []struct {
		name   string
		nights []int // jobs at 02:00 on the nights before
		want   string
	}{
		{"nothing learned yet", nil, ""},
		// One night counts in full, not at profile_weight (0.5): the whole
		// batch is pre-warmed from the second night.
		{"after one night of 200", []int{200}, "create docker 200"},
		{"after two nights of 200", []int{200, 200}, "create docker 200"},
		// A one-off fades: ½·200 / (1 - ¼) after a night without it.
		{"after 200 then nothing", []int{200, 0}, "create docker 67"},
		{"after 200 then two nights without", []int{200, 0, 0}, "create docker 29"},
		{"a nightly of 4 is below profile_min", []int{4, 4}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := policy.State{}
			for d, n := range tc.nights {
				st = night(st, d, n)
			}
			next := day1.Add(time.Duration(len(tc.nights)) * 24 * time.Hour)
			// 01:57: 02:00 is more than a boot (90 s) and 30 s of slack away.
			ds, st := decide(st, next.Add(-3*time.Minute), nil)
			if got := summary(ds); got != "" {
				t.Fatalf("at 01:57: %q, want nothing yet", got)
			}
			// 01:58: a Droplet created now would just catch 02:00.
			ds, st = decide(st, next.Add(-2*time.Minute), nil)
			if got := summary(ds); got != tc.want {
				t.Fatalf("at 01:58: %q, want %q\n%v", got, tc.want, ds)
			}
			if tc.want != "" && !strings.Contains(ds[0].Reason, "the time of day expects") {
				t.Errorf("reason should credit the time of day: %s", ds[0].Reason)
			}
			// Learning more never changes the State it was given.
			if len(tc.nights) > 0 {
				seen, _ := st.ShoalPool("docker")
				before := seen.ProfileAt(next)
				later := night(st, len(tc.nights), 50)
				if again, _ := st.ShoalPool("docker"); again.ProfileAt(next) != before {
					t.Fatalf("a Decide changed its input's profile: %v → %v", before, again.ProfileAt(next))
				}
				if learned, _ := later.ShoalPool("docker"); learned.ProfileAt(next) == before {
					t.Fatalf("a night of 50 jobs left the profile at %v", before)
				}
			}
			// The ordinary 10:37 pipeline of 4 is noise: nothing at 10:36.
			ds, _ = decide(st, next.Add(8*time.Hour+36*time.Minute), nil)
			if got := summary(ds); got != "" {
				t.Errorf("at 10:36: %q, want nothing: 4 jobs are below profile_min", got)
			}
		})
	}
}

func TestShoalCountsSharedJobsOnce(t *testing.T) {
	docker := settings(nil)
	large := settings(func(s *config.Settings) { s.Pool = "large"; s.Tags = []string{"docker", "large"} })
	shared := policy.Job{ID: 1, Tags: []string{"docker"}, QueuedAt: t0}
	big := policy.Job{ID: 2, Tags: []string{"docker", "large"}, QueuedAt: t0}
	if !tags.Covers(large.Tags, shared.Tags) || tags.Covers(docker.Tags, big.Tags) {
		t.Fatal("Covers")
	}
	s := snap(config.BillingPerSecond,
		policy.Pool{Settings: large, Pending: []policy.Job{shared, big}},
		policy.Pool{Settings: docker, Pending: []policy.Job{shared}})
	ds, _ := mustPolicy(t, "shoal", noWarm).Decide(s, policy.State{})
	if got := summary(ds); got != "create large 1, create docker 1" {
		t.Errorf("%q: the docker job belongs to the docker pool only", got)
	}
}

func TestShoalDecideIsPure(t *testing.T) {
	pol := policy.NewShoal()
	s := snap(config.BillingPerSecond, policy.Pool{Settings: settings(nil), Pending: jobs(7, t0)})
	_, st := pol.Decide(s, policy.State{})
	before, _ := st.ShoalPool("docker")
	later := s
	later.Now = t0.Add(30 * time.Second)
	later.Pools = []policy.Pool{{Settings: settings(nil), Pending: jobs(12, t0.Add(20*time.Second))}}
	a, sa := pol.Decide(later, st)
	b, sb := pol.Decide(later, st)
	if summary(a) != summary(b) || a[0].Reason != b[0].Reason {
		t.Errorf("same input, different output: %v / %v", a, b)
	}
	after, _ := st.ShoalPool("docker")
	if before.ArrivalsPerMinute != after.ArrivalsPerMinute {
		t.Errorf("Decide changed the state it was given: %v → %v", before.ArrivalsPerMinute, after.ArrivalsPerMinute)
	}
	x, _ := sa.ShoalPool("docker")
	y, _ := sb.ShoalPool("docker")
	if x.ArrivalsPerMinute != y.ArrivalsPerMinute || x.ArrivalsPerMinute <= before.ArrivalsPerMinute*0.9 {
		t.Errorf("new states differ or learned nothing: %v %v (before %v)", x.ArrivalsPerMinute, y.ArrivalsPerMinute, before.ArrivalsPerMinute)
	}
}

// TestShoalCountsJobsNeverSeenPending: a runner may take a job between two
// looks; the jobs started on the pool's Droplets still count as arrivals.
func TestShoalCountsJobsNeverSeenPending(t *testing.T) {
	pol := policy.NewShoal()
	set := settings(nil)
	ready := func(running, done int) []policy.Droplet {
		var ds []policy.Droplet
		for i := range 10 {
			d := idleDroplet(i+1, 10*time.Second)
			d.RunningJobs, d.JobsDone = running, done
			ds = append(ds, d)
		}
		return ds
	}
	_, st := pol.Decide(snap(config.BillingPerSecond, policy.Pool{Settings: set, Droplets: ready(0, 3)}), policy.State{})
	s := snap(config.BillingPerSecond, policy.Pool{Settings: set, Droplets: ready(1, 3)})
	s.Now = t0.Add(15 * time.Second)
	_, st = pol.Decide(s, st)
	ps, _ := st.ShoalPool("docker")
	// 10 jobs started unseen: 10/600 per second, 1 per minute.
	if math.Abs(ps.ArrivalsPerMinute-1) > 0.01 {
		t.Errorf("arrivals/min = %v, want 1 (10 jobs started between looks)", ps.ArrivalsPerMinute)
	}
}

// Against a real GitLab a pending job's queue time (now less queued_duration)
// moves a little with each request's latency: it is still one arrival.
func TestShoalCountsAJobOnceWhateverItsQueueTime(t *testing.T) {
	pol := policy.NewShoal()
	set := settings(nil)
	st := policy.State{}
	for i, jitter := range []time.Duration{0, -300 * time.Millisecond, 200 * time.Millisecond, -100 * time.Millisecond} {
		s := snap(config.BillingPerSecond, policy.Pool{Settings: set, Pending: jobs(5, t0.Add(jitter))})
		s.Now = t0.Add(time.Duration(i) * 10 * time.Second)
		_, st = pol.Decide(s, st)
	}
	ps, _ := st.ShoalPool("docker")
	// 5 arrivals, decayed over 30 s with the 600 s time constant: 5/600·e^(-30/600) per second.
	if want := 5.0 / 600 * math.Exp(-30.0/600) * 60; math.Abs(ps.ArrivalsPerMinute-want) > 1e-9 {
		t.Fatalf("arrivals/min = %v, want %v: the same 5 jobs were counted again", ps.ArrivalsPerMinute, want)
	}
}

// A spike the time of day foresaw (a nightly batch) says nothing of the rate
// to come: it does not raise the arrival rate, and the Droplets its jobs
// leave idle go at once instead of lingering a boot. The same spike
// unforeseen, on the first night, raises the rate and its Droplets linger
// (with the rule on crowds of idle Droplets off, to see this one alone).
func TestShoalForeseenSpike(t *testing.T) {
	pol := mustPolicy(t, "shoal", policy.Params{"warm": 1, "linger_cover": 0}) // the crowd rule off: see TestShoalIdleCrowd
	set := settings(nil)
	set.MaxInstances = 300
	night1 := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	decide := func(st policy.State, at time.Time, pending []policy.Job, ds []policy.Droplet) ([]policy.Decision, policy.State) {
		return pol.Decide(policy.Snapshot{Now: at, Billing: config.BillingPerSecond,
			Pools: []policy.Pool{{Settings: set, Pending: pending, Droplets: ds}}}, st)
	}
	// At 02:08, the batch's 20 Droplets (made 01:58, ready after 90 s): 15
	// still run their job, 5 have been idle 30 s, less than a boot. And 20
	// more, made at 02:06 for nothing, just as idle.
	fleetAt := func(at time.Time) []policy.Droplet {
		var ds []policy.Droplet
		for i := range 40 {
			d := policy.Droplet{ID: i + 1, State: policy.Ready, CreatedAt: at.Add(-2 * time.Minute), ReadyAt: at.Add(-30 * time.Second)}
			switch {
			case i < 15:
				d.RunningJobs = 1
			case i < 20:
				d.JobsDone, d.LastJobFinishedAt = 1, at.Add(7*time.Minute+30*time.Second)
			default:
				d.CreatedAt, d.ReadyAt = at.Add(6*time.Minute), at.Add(7*time.Minute+30*time.Second)
			}
			ds = append(ds, d)
		}
		return ds
	}
	var st policy.State
	for night, want := range []struct {
		rate      float64 // arrivals per minute just after the batch
		decisions string
	}{
		{rate: 2, decisions: ""},
		// As many slots as the batch brought jobs, no more.
		{rate: 0, decisions: deletes(16, 35)},
	} {
		at := night1.Add(time.Duration(night) * 24 * time.Hour)
		_, st = decide(st, at.Add(5*time.Second), jobs(20, at), nil)
		if ps, _ := st.ShoalPool("docker"); math.Abs(ps.ArrivalsPerMinute-want.rate) > 0.01 {
			t.Errorf("night %d: %.2f arrivals/min after the batch, want %.0f", night+1, ps.ArrivalsPerMinute, want.rate)
		}
		var ds []policy.Decision
		ds, st = decide(st, at.Add(8*time.Minute), nil, fleetAt(at))
		if got := summary(ds); got != want.decisions {
			t.Fatalf("night %d at 02:08: %q, want %q\n%v", night+1, got, want.decisions, ds)
		}
		if want.decisions != "" && !strings.Contains(ds[0].Reason, "the spike the time of day foresaw has come") {
			t.Errorf("reason should say why it does not linger: %s", ds[0].Reason)
		}
		_, st = decide(st, at.Add(time.Hour), nil, nil)
	}
}

// deletes renders "delete from, …, delete to".
func deletes(from, to int) string {
	var parts []string
	for id := from; id <= to; id++ {
		parts = append(parts, fmt.Sprintf("delete %d", id))
	}
	return strings.Join(parts, ", ")
}

// arrivals feeds a policy n new pending jobs at a time, seen 5 s after they
// are queued, and keeps its State.
type arrivals struct {
	pol policy.Policy
	set config.Settings
	st  policy.State
	id  int64
}

func (a *arrivals) arrive(at time.Time, n int) {
	var pending []policy.Job
	for range n {
		a.id++
		pending = append(pending, policy.Job{ID: a.id, Tags: []string{"docker"}, QueuedAt: at})
	}
	_, a.st = a.pol.Decide(policy.Snapshot{Now: at.Add(5 * time.Second), Billing: config.BillingPerSecond,
		Pools: []policy.Pool{{Settings: a.set, Pending: pending}}}, a.st)
}

// A pool busy at the same hours every day is no spike, nor is the step into
// those hours: its arrivals count in the rate, and its idle Droplets linger as
// usual.
func TestShoalBusyHoursAreNoSpike(t *testing.T) {
	a := &arrivals{pol: mustPolicy(t, "shoal", nil), set: settings(nil)}
	day1 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	// Without the spike rule the decayed rate after m minutes of 20 a minute
	// is 20·(1 − e^(−m/10)).
	for day := range 2 {
		for m := range 30 { // 20 jobs a minute from 10:00 to 10:30, nothing before
			a.arrive(day1.Add(time.Duration(day)*24*time.Hour+time.Duration(m)*time.Minute), 20)
			if want := 20 * (1 - math.Exp(-float64(m+1)/10)); day == 1 && m > 0 {
				if ps, _ := a.st.ShoalPool("docker"); ps.ArrivalsPerMinute < 0.9*want {
					t.Fatalf("10:%02d: %.1f arrivals/min, want about %.1f: the busy stretch was taken for a spike", m, ps.ArrivalsPerMinute, want)
				}
			}
		}
	}
	at := day1.Add(24*time.Hour + 30*time.Minute + 30*time.Second)
	var ds []policy.Droplet
	for i := range 20 {
		ds = append(ds, policy.Droplet{ID: i + 1, State: policy.Ready, CreatedAt: at.Add(-10 * time.Minute),
			ReadyAt: at.Add(-8 * time.Minute), JobsDone: 1, LastJobFinishedAt: at.Add(-30 * time.Second)})
	}
	got, _ := a.pol.Decide(policy.Snapshot{Now: at, Billing: config.BillingPerSecond, Pools: []policy.Pool{{Settings: a.set, Droplets: ds}}}, a.st)
	if s := summary(got); strings.Contains(s, "delete") {
		t.Fatalf("at 10:30:30 with 20 Droplets idle 30 s: %q, want them kept\n%v", s, got)
	}
}

// After a foreseen spike, idle Droplets still linger when the time of day
// expects more work soon, even work too thin to pre-warm for.
func TestShoalSpikeLingersWhenMoreIsExpected(t *testing.T) {
	a := &arrivals{pol: mustPolicy(t, "shoal", nil), set: settings(nil)}
	arrive := a.arrive
	night1 := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	for night := range 2 {
		at := night1.Add(time.Duration(night) * 24 * time.Hour)
		arrive(at, 20) // the batch
		if night == 0 {
			arrive(at.Add(8*time.Minute), 4) // and, the first night, some work after it
			arrive(at.Add(9*time.Minute), 4)
			arrive(at.Add(20*time.Minute), 0)
		}
	}
	// Night 2, 02:07:50: 5 of the batch's Droplets idle for 30 s; the profile
	// expects 8 jobs in the next 90 s, below profile_min in every minute.
	night2 := night1.Add(24 * time.Hour)
	at := night2.Add(7*time.Minute + 50*time.Second)
	var ds []policy.Droplet
	for i := range 20 {
		d := policy.Droplet{ID: i + 1, State: policy.Ready, CreatedAt: night2.Add(-2 * time.Minute), ReadyAt: night2.Add(-30 * time.Second)}
		if i < 15 {
			d.RunningJobs = 1
		} else {
			d.JobsDone, d.LastJobFinishedAt = 1, at.Add(-30*time.Second)
		}
		ds = append(ds, d)
	}
	got, _ := a.pol.Decide(policy.Snapshot{Now: at, Billing: config.BillingPerSecond, Pools: []policy.Pool{{Settings: a.set, Droplets: ds}}}, a.st)
	if s := summary(got); s != "" {
		t.Fatalf("%q, want the idle Droplets kept for the work expected in the next 90 s\n%v", s, got)
	}
}

// The credit a foreseen spike gives its idle slots is used up by every idle
// slot released, whichever way, and lapses an hour after the spike.
func TestShoalForeseenCreditLapses(t *testing.T) {
	a := &arrivals{pol: mustPolicy(t, "shoal", nil), set: settings(nil)}
	night1 := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	night2 := night1.Add(24 * time.Hour)
	a.arrive(night1, 20)
	a.arrive(night2, 20) // foreseen: 20 slots may skip the linger
	droplet := func(id, running int, idle time.Duration, at time.Time) policy.Droplet {
		d := policy.Droplet{ID: id, State: policy.Ready, CreatedAt: night2.Add(-2 * time.Minute), ReadyAt: night2.Add(-30 * time.Second), RunningJobs: running}
		if running == 0 {
			d.JobsDone, d.LastJobFinishedAt = 1, at.Add(-idle)
		}
		return d
	}
	decide := func(st policy.State, at time.Time, ds []policy.Droplet) ([]policy.Decision, policy.State) {
		return a.pol.Decide(policy.Snapshot{Now: at, Billing: config.BillingPerSecond, Pools: []policy.Pool{{Settings: a.set, Droplets: ds}}}, st)
	}

	t.Run("used up by releases after the linger", func(t *testing.T) {
		// 02:06: the batch's 20 Droplets have been idle past their linger: they
		// go the usual way, and take the credit with them.
		at := night2.Add(6 * time.Minute)
		var ds []policy.Droplet
		for i := range 20 {
			ds = append(ds, droplet(i+1, 0, 3*time.Minute, at))
		}
		got, st := decide(a.st, at, append(ds, droplet(21, 1, 0, at)))
		if n := strings.Count(summary(got), "delete"); n != 20 {
			t.Fatalf("%q, want the 20 idle Droplets released", summary(got))
		}
		// 02:08: another Droplet, idle 20 s, lingers as usual.
		at = night2.Add(8 * time.Minute)
		got, _ = decide(st, at, []policy.Droplet{droplet(21, 1, 0, at), droplet(22, 0, 20*time.Second, at)})
		if s := summary(got); s != "" {
			t.Fatalf("%q, want the Droplet idle 20 s kept for its linger: the credit is used up", s)
		}
	})
	t.Run("an hour after the spike", func(t *testing.T) {
		at := night2.Add(65 * time.Minute) // its long jobs still run
		got, _ := decide(a.st, at, []policy.Droplet{droplet(1, 1, 0, at), droplet(2, 1, 0, at), droplet(3, 0, 20*time.Second, at)})
		if s := summary(got); s != "" {
			t.Fatalf("%q, want the Droplet idle 20 s kept for its linger: the credit has lapsed", s)
		}
	})
}

// Beyond one Droplet, only as many idle slots linger as jobs are expected over
// the linger and a boot; the rest of a crowd goes at once.
func TestShoalIdleCrowd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params policy.Params
		want   func(released int) bool
	}{
		// A minute after 20 arrivals the rate is 20/600·e^(−55/600) ≈ 0.030 a
		// second: 2 warm slots (half of 150 s worth), and 6 of the other 18
		// linger (180 s worth: the linger and a boot of 90 s each), 12 go.
		{"by default, most of the crowd goes", nil, func(n int) bool { return n == 12 }},
		{"linger_cover 0: all linger", policy.Params{"linger_cover": 0}, func(n int) bool { return n == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &arrivals{pol: mustPolicy(t, "shoal", tc.params), set: settings(nil)}
			a.arrive(t0, 20) // 2 jobs a minute recently: about 6 over the linger and a boot
			at := t0.Add(time.Minute)
			var ds []policy.Droplet
			for i := range 20 { // their Droplets, all idle for 30 s
				ds = append(ds, policy.Droplet{ID: i + 1, State: policy.Ready, CreatedAt: t0.Add(-3 * time.Minute),
					ReadyAt: t0.Add(-90 * time.Second), JobsDone: 1, LastJobFinishedAt: at.Add(-30 * time.Second)})
			}
			got, _ := a.pol.Decide(policy.Snapshot{Now: at, Billing: config.BillingPerSecond, Pools: []policy.Pool{{Settings: a.set, Droplets: ds}}}, a.st)
			released := strings.Count(summary(got), "delete")
			if !tc.want(released) {
				t.Fatalf("%d of 20 Droplets idle 30 s released: %v", released, got)
			}
			if released > 0 && !strings.Contains(got[0].Reason, "already linger for the jobs expected") {
				t.Errorf("reason should say why it does not linger: %s", got[0].Reason)
			}
		})
	}
	// With 4 slots a Droplet, whole Droplets linger until they cover the 6
	// jobs expected: two of five (8 slots), not one (4 slots).
	a := &arrivals{pol: mustPolicy(t, "shoal", noWarm), set: settings(func(s *config.Settings) { s.CapacityPerInstance = 4 })}
	a.arrive(t0, 20)
	at := t0.Add(time.Minute)
	var ds []policy.Droplet
	for i := range 5 {
		ds = append(ds, policy.Droplet{ID: i + 1, State: policy.Ready, CreatedAt: t0.Add(-3 * time.Minute),
			ReadyAt: t0.Add(-90 * time.Second), JobsDone: 4, LastJobFinishedAt: at.Add(-30 * time.Second)})
	}
	got, _ := a.pol.Decide(policy.Snapshot{Now: at, Billing: config.BillingPerSecond, Pools: []policy.Pool{{Settings: a.set, Droplets: ds}}}, a.st)
	if s := summary(got); s != "delete 3, delete 4, delete 5" {
		t.Fatalf("5 idle Droplets of 4 slots, 6 jobs expected: %q, want Droplets 1 and 2 kept", s)
	}

	// A lingering Droplet stops no drain: with 4 slots a Droplet and 4 spare
	// wanted, the partly busy ones are drained and the idle one is the spare.
	runCases(t, []decideCase{{name: "lingering Droplets do not stop drains", policy: "shoal", params: noWarm,
		pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.CapacityPerInstance = 4; s.IdleCount = 4 }),
			Droplets: []policy.Droplet{idleDroplet(1, 30*time.Second), busyDroplet(2, 1), busyDroplet(3, 1), busyDroplet(4, 1), busyDroplet(5, 1)}},
		want: "drain 2, drain 3, drain 4, drain 5"}})
	// A lone idle Droplet lingers whatever the rate: plain ski rental.
	pol := mustPolicy(t, "shoal", nil)
	got, _ = pol.Decide(snap(config.BillingPerSecond, policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{idleDroplet(1, 30*time.Second)}}), policy.State{})
	if s := summary(got); s != "" {
		t.Fatalf("a lone Droplet idle 30 s with nothing known: %q, want it kept", s)
	}
}
