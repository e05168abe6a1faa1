package policy_test

import (
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/policy"
)

func TestDockerMachineDecide(t *testing.T) {
	idle5 := policy.Params{"idle_count": 5, "idle_time": 600}
	runCases(t, []decideCase{
		{name: "IdleCount 0 ignores the queue", policy: "docker-machine",
			pool: policy.Pool{Settings: settings(nil), Pending: jobs(3, t0)}, want: ""},
		{name: "IdleCount 0 creates a machine inside each accepted job", policy: "docker-machine",
			pool: policy.Pool{Settings: settings(nil), Waiting: jobs(3, t0), Droplets: []policy.Droplet{booting(1)}},
			want: "create docker 2", reason: "each job creates its own"},
		{name: "IdleCount 0 on-demand creation stops at limit", policy: "docker-machine",
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.MaxInstances = 2 }), Waiting: jobs(5, t0)},
			want: "create docker 2"},
		{name: "scale from zero: IdleCount machines", policy: "docker-machine", params: idle5,
			pool: policy.Pool{Settings: settings(nil)}, want: "create docker 5", reason: "0 idle + 0 creating < IdleCount 5"},
		{name: "burst of 30: growth capped by MaxGrowthRate", policy: "docker-machine",
			params: policy.Params{"idle_count": 5, "max_growth_rate": 2},
			pool:   policy.Pool{Settings: settings(nil), Pending: jobs(30, t0)}, want: "create docker 2", reason: "MaxGrowthRate 2"},
		{name: "burst of 30: nothing more while MaxGrowthRate machines are creating", policy: "docker-machine",
			params: policy.Params{"idle_count": 5, "max_growth_rate": 2},
			pool: policy.Pool{Settings: settings(nil), Pending: jobs(30, t0),
				Droplets: []policy.Droplet{busyDroplet(1, 1), busyDroplet(2, 1), booting(3), booting(4)}}, want: ""},
		{name: "burst of 30: the queue does not matter, idle machines do", policy: "docker-machine",
			params: policy.Params{"idle_count": 2},
			pool: policy.Pool{Settings: settings(nil), Pending: jobs(30, t0),
				Droplets: []policy.Droplet{busyDroplet(1, 1), busyDroplet(2, 1), busyDroplet(3, 1)}},
			want: "create docker 2"},
		{name: "too many idle machines: the first IdleCount are kept", policy: "docker-machine",
			params: policy.Params{"idle_count": 1, "idle_time": 600},
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{
				idleDroplet(1, time.Hour), idleDroplet(2, time.Hour), idleDroplet(3, 5*time.Minute)}},
			want: "delete 2", reason: "too many idle machines"},
		{name: "scale to zero with IdleCount 0, capacity ignored", policy: "docker-machine",
			params: policy.Params{"idle_time": 600},
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.CapacityPerInstance = 4 }),
				Droplets: []policy.Droplet{idleDroplet(1, time.Hour), idleDroplet(2, time.Hour)}},
			want: "delete 1, delete 2"},
		{name: "MaxBuilds retires a used machine", policy: "docker-machine",
			params: policy.Params{"idle_count": 2, "max_builds": 3},
			pool:   policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{idleDroplet(1, time.Second)}},
			want:   "delete 1, create docker 2", reason: "too many builds"},
		{name: "IdleScaleFactor: idle machines follow machines in use", policy: "docker-machine",
			params: policy.Params{"idle_count": 10, "scale_factor": 0.5},
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{
				busyDroplet(1, 1), busyDroplet(2, 1), busyDroplet(3, 1), busyDroplet(4, 1), busyDroplet(5, 1), busyDroplet(6, 1)}},
			want: "create docker 3", reason: "IdleCount 3"},
		{name: "IdleScaleFactor: IdleCountMin when nothing runs", policy: "docker-machine",
			params: policy.Params{"idle_count": 10, "scale_factor": 0.5, "idle_count_min": 2},
			pool:   policy.Pool{Settings: settings(nil)}, want: "create docker 2"},
		{name: "drained machines are deleted", policy: "docker-machine",
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{{ID: 4, State: policy.Draining, JobsDone: 1}}},
			want: "delete 4"},
	})
}

func TestDockerMachineAcceptance(t *testing.T) {
	pol := mustPolicy(t, "docker-machine", nil)
	s := settings(func(s *config.Settings) { s.CapacityPerInstance = 4; s.MaxInstances = 7 })
	if a := pol.Acceptance(s); a.Mode != policy.AcceptThenProvision || a.SlotsPerDroplet != 1 || a.Limit != 7 ||
		a.DecideEvery != 3*time.Second || a.DecideOnJobHook {
		t.Errorf("IdleCount 0: %+v, want accept-then-provision, 1 slot, limit 7, every 3 s", a)
	}
	s.IdleCount = 2
	if a := pol.Acceptance(s); a.Mode != policy.AcceptOnFreeSlot || a.SlotsPerDroplet != 1 {
		t.Errorf("IdleCount 2: %+v, want on-free-slot, 1 slot", a)
	}
}

func TestTaskscalerDecide(t *testing.T) {
	cap4 := func(s *config.Settings) { s.CapacityPerInstance = 4; s.IdleTime = 10 * time.Minute }
	runCases(t, []decideCase{
		{name: "idle_count 0 ignores the queue", policy: "taskscaler",
			pool: policy.Pool{Settings: settings(cap4), Pending: jobs(5, t0)}, want: ""},
		{name: "non-preemptive: acquired jobs get instances", policy: "taskscaler",
			pool: policy.Pool{Settings: settings(cap4), Waiting: jobs(5, t0)}, want: "create docker 2"},
		{name: "idle_count counts slots, not instances", policy: "taskscaler", params: policy.Params{"idle_count": 6},
			pool: policy.Pool{Settings: settings(cap4)}, want: "create docker 2", reason: "0 slots in use + 6 idle"},
		{name: "scale_factor with its limit", policy: "taskscaler", params: policy.Params{"scale_factor": 1, "scale_factor_limit": 3},
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{busyDroplet(1, 4), busyDroplet(2, 4)}},
			want: "create docker 1", reason: "8 slots in use + 3 idle"},
		{name: "max_instances caps growth", policy: "taskscaler", params: policy.Params{"idle_count": 40},
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { cap4(s); s.MaxInstances = 3 })}, want: "create docker 3"},
		{name: "known failure: idle_count 0 and capacity 4 never reach zero", policy: "taskscaler",
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{idleDroplet(1, 3*time.Hour)}}, want: ""},
		{name: "known failure keeps exactly one: the others go", policy: "taskscaler",
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{
				idleDroplet(1, 3*time.Hour), idleDroplet(2, 2*time.Hour), idleDroplet(3, time.Hour)}},
			want: "delete 1, delete 2"},
		{name: "capacity 1 reaches zero", policy: "taskscaler",
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.IdleTime = 10 * time.Minute }),
				Droplets: []policy.Droplet{idleDroplet(1, time.Hour)}}, want: "delete 1", reason: "idle 1h0m0s ≥ idle_time 10m0s"},
		{name: "preemptive mode with capacity 4 reaches zero", policy: "taskscaler", params: policy.Params{"preemptive": 1},
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{idleDroplet(1, time.Hour)}}, want: "delete 1"},
		{name: "idle for less than idle_time stays", policy: "taskscaler", params: policy.Params{"preemptive": 1},
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{idleDroplet(1, 5*time.Minute)}}, want: ""},
		{name: "max_use_count retires", policy: "taskscaler", params: policy.Params{"idle_count": 4, "max_use_count": 3},
			pool: policy.Pool{Settings: settings(cap4), Droplets: []policy.Droplet{idleDroplet(1, time.Second)}},
			want: "delete 1", reason: "max_use_count"},
	})
}

func TestTaskscalerAcceptance(t *testing.T) {
	s := settings(func(s *config.Settings) { s.CapacityPerInstance = 3; s.MaxInstances = 5 })
	pol := mustPolicy(t, "taskscaler", nil)
	if a := pol.Acceptance(s); a.Mode != policy.AcceptThenProvision || a.SlotsPerDroplet != 3 || a.Limit != 15 || a.DecideEvery != policy.CheckInterval {
		t.Errorf("idle_count 0: %+v", a)
	}
	s.IdleCount = 1
	if a := pol.Acceptance(s); a.Mode != policy.AcceptOnFreeSlot {
		t.Errorf("idle_count 1 defaults to preemptive: %+v", a)
	}
	if a := mustPolicy(t, "taskscaler", policy.Params{"preemptive": 0}).Acceptance(s); a.Mode != policy.AcceptThenProvision {
		t.Errorf("preemptive=0 overrides the default: %+v", a)
	}
}

func TestStaticDecide(t *testing.T) {
	runCases(t, []decideCase{
		{name: "from zero", policy: "static", params: policy.Params{"instances": 3},
			pool: policy.Pool{Settings: settings(nil)}, want: "create docker 3", reason: "static fleet of 3"},
		{name: "default is min_instances", policy: "static",
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.MinInstances = 2 })}, want: "create docker 2"},
		{name: "capped by max_instances", policy: "static", params: policy.Params{"instances": 8},
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.MaxInstances = 4 })}, want: "create docker 4"},
		{name: "steady: nothing", policy: "static", params: policy.Params{"instances": 2},
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{idleDroplet(1, time.Hour), busyDroplet(2, 1)}}, want: ""},
		{name: "above N: idle extras go, busy ones stay", policy: "static", params: policy.Params{"instances": 1},
			pool: policy.Pool{Settings: settings(nil), Droplets: []policy.Droplet{busyDroplet(1, 1), idleDroplet(2, time.Hour), busyDroplet(3, 1)}},
			want: "delete 2"},
		{name: "does not go to zero", policy: "static", params: policy.Params{"instances": 1},
			pool: policy.Pool{Settings: settings(func(s *config.Settings) { s.CapacityPerInstance = 4 }),
				Droplets: []policy.Droplet{idleDroplet(1, 10*time.Hour)}}, want: ""},
	})
}

func TestShoalAndStaticAcceptance(t *testing.T) {
	s := settings(func(s *config.Settings) { s.CapacityPerInstance = 2; s.MaxInstances = 5 })
	a := mustPolicy(t, "shoal", nil).Acceptance(s)
	if a.Mode != policy.AcceptOnFreeSlot || a.SlotsPerDroplet != 2 || a.Limit != 10 || a.DecideEvery != 0 || !a.DecideOnJobHook {
		t.Errorf("shoal: %+v", a)
	}
	a = mustPolicy(t, "static", policy.Params{"instances": 3}).Acceptance(s)
	if a.Mode != policy.AcceptOnFreeSlot || a.SlotsPerDroplet != 2 || a.Limit != 6 || a.DecideOnJobHook {
		t.Errorf("static: %+v", a)
	}
}

// TestPeriodsForEveryBaseline: a [[pool.policy]] period plays the role of
// docker+machine's [[runners.machine.autoscaling]] and taskscaler's
// [[runners.autoscaler.policy]], and sets static's default size
// (min_instances); the last matching period wins.
func TestPeriodsForEveryBaseline(t *testing.T) {
	cfg, err := config.Parse("p.toml", []byte(`
[[pool]]
name = "docker"
capacity_per_instance = 2
idle_count = 1
  [[pool.policy]]
  periods = ["* 9-17 * * mon-fri"]
  idle_count = 4
  min_instances = 3
  [[pool.policy]]
  periods = ["* 10 * * *"]
  idle_count = 6
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy string
		at     time.Time
		want   string
	}{
		{"taskscaler", t0, "create docker 3"},                     // 6 idle slots / 2 per instance
		{"taskscaler", t0.Add(2 * time.Hour), "create docker 2"},  // 4 idle slots
		{"taskscaler", t0.Add(10 * time.Hour), "create docker 1"}, // the pool's 1 idle slot
		{"docker-machine", t0, "create docker 6"},                 // machines, one job each
		{"docker-machine", t0.Add(2 * time.Hour), "create docker 4"},
		{"docker-machine", t0.Add(10 * time.Hour), "create docker 1"},
		// The last match is the whole policy in force: at 10:00 the second
		// period wins and the first one's min_instances does not apply.
		{"static", t0, "create docker 1"},
		{"static", t0.Add(2 * time.Hour), "create docker 3"},
		{"static", t0.Add(10 * time.Hour), "create docker 1"},
	} {
		pol := mustPolicy(t, tc.policy, nil)
		ds, _ := pol.Decide(policy.Snapshot{Now: tc.at, Pools: []policy.Pool{{Settings: cfg.Pools[0].Effective(tc.at)}}}, policy.State{})
		if got := summary(ds); got != tc.want {
			t.Errorf("%s at %s: %q, want %q", tc.policy, tc.at.Format("Mon 15:04"), got, tc.want)
		}
	}
}
