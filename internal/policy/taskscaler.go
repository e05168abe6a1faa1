package policy

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/shoalci/shoal/internal/config"
)

// The taskscaler baseline: GitLab Runner's instance/docker-autoscaler
// executors, which scale through gitlab-org/fleeting/taskscaler. Sources:
// GitLab Runner's docs/configuration/advanced-configuration.md
// ([runners.autoscaler] and [[runners.autoscaler.policy]]) and the taskscaler
// merge requests cited below.
//
// Config mapping: the pool's capacity_per_instance, max_instances, idle_count,
// idle_time, scale_factor and scale_factor_limit are [runners.autoscaler]'s
// keys of the same names; [[pool.policy]] is [[runners.autoscaler.policy]]
// (periods, timezone, last match wins). taskscaler has no min_instances: it is
// ignored.

var taskscalerEntry = Entry{
	Name: "taskscaler",
	Doc:  "GitLab Runner's fleeting taskscaler: idle_count in job slots, scale_factor, capacity_per_instance, preemptive mode",
	Params: append([]ParamDoc{
		{"preemptive", "1: preemptive mode (default when idle_count > 0), 0: not", 0},
		{"max_use_count", "remove an instance after this many jobs (0: never)", 0},
	}, settingParams...),
	Grid: func() []Params {
		return grid([]string{"idle_count", "idle_time", "scale_factor"},
			[][]float64{{0, 1, 2, 5, 10}, {300, 1800}, {0, 0.5}})
	},
	new: func(p Params) Policy { return &Taskscaler{params: p} },
}

// Taskscaler is the taskscaler baseline.
type Taskscaler struct {
	params Params
}

var _ Policy = (*Taskscaler)(nil)

func (p *Taskscaler) Name() string   { return "taskscaler" }
func (p *Taskscaler) Params() Params { return p.params }

// preemptive: "preemptive_mode ... defaults to true when idle_count > 0"
// (advanced-configuration.md, [[runners.autoscaler.policy]]).
func (p *Taskscaler) preemptive(s config.Settings) bool {
	if p.params.has("preemptive") {
		return p.params["preemptive"] != 0
	}
	return s.IdleCount > 0
}

// Acceptance: in preemptive mode "a job is requested only once capacity is
// confirmed" (a free slot on a ready instance); otherwise the runner requests
// a job first and then asks taskscaler for capacity, so the job waits for an
// instance to be provisioned. capacity_per_instance jobs share an instance.
// It is modelled as deciding at the runner's check_interval, when the runner
// asks for jobs and acquires capacity.
func (p *Taskscaler) Acceptance(s config.Settings) Acceptance {
	s = p.params.overrideSettings(s)
	mode := AcceptThenProvision
	if p.preemptive(s) {
		mode = AcceptOnFreeSlot
	}
	return Acceptance{Mode: mode, SlotsPerDroplet: s.CapacityPerInstance, Limit: s.MaxInstances * s.CapacityPerInstance, DecideEvery: CheckInterval}
}

// Decide implements Policy.
func (p *Taskscaler) Decide(s Snapshot, prev State) ([]Decision, State) {
	var out []Decision
	for i := range s.Pools {
		out = p.decidePool(s.Now, &s.Pools[i], out)
	}
	return out, prev
}

func (p *Taskscaler) decidePool(now time.Time, pool *Pool, out []Decision) []Decision {
	set := p.params.overrideSettings(pool.Settings)
	name := set.Pool
	slots := set.CapacityPerInstance
	f := summarise(pool.Droplets, slots)
	maxUse := p.params.intOr("max_use_count", 0)

	out = deleteDrained(name, pool.Droplets, out)

	// Capacity in use: running jobs, plus jobs acquired but waiting for an
	// instance (non-preemptive).
	inUse := f.running + len(pool.Waiting)
	// idle_count is in job slots, not instances; scale_factor asks for idle
	// capacity "as a factor of the current in use capacity", capped by
	// scale_factor_limit; the larger of the two is kept idle.
	idle := max(set.IdleCount, scaleFactorSlots(set, inUse))
	reserved := 0
	// The reported failure to reach zero with idle_count = 0 and
	// capacity_per_instance > 1 (issue 3; users' reports), as we model it: in
	// non-preemptive mode the runner's pending job request holds a capacity
	// reservation on an instance with a free slot, and reservations block
	// scale-in ("By design, reservations for capacity won't allow instances
	// to be scaled down", taskscaler MR !60). With one slot per instance the
	// request is served by provisioning a whole instance for the job, so no
	// slot is held ahead and the fleet does reach zero.
	if !p.preemptive(set) && slots > 1 && f.free > 0 {
		reserved = 1
	}
	need := inUse + idle + reserved
	required := min(ceilDiv(need, slots), set.MaxInstances)
	live := f.live()

	if required > live {
		n := required - live
		if room := set.MaxInstances - f.total; n > room {
			n = room
		}
		if n > 0 {
			out = append(out, Decision{Kind: Create, Pool: name, Count: n,
				Reason: fmt.Sprintf("%d slots in use + %d idle wanted need %d instances of %d slots; %d exist", inUse, idle, required, slots, live)})
		}
	}

	// Scale in: instances with no job, idle at least idle_time ("idle age runs
	// from the last job, or from provisioning"), longest idle first, while
	// more instances exist than required. Instances past max_use_count are
	// retired whenever they are idle.
	var idleOnes []*Droplet
	for i := range pool.Droplets {
		d := &pool.Droplets[i]
		if d.State == Ready && d.RunningJobs == 0 {
			idleOnes = append(idleOnes, d)
		}
	}
	slices.SortFunc(idleOnes, func(a, b *Droplet) int {
		return cmp.Or(a.idleSince().Compare(b.idleSince()), cmp.Compare(a.ID, b.ID))
	})
	excess := live - required
	for _, d := range idleOnes {
		switch {
		case maxUse > 0 && d.JobsDone >= maxUse:
			out = append(out, release(name, d, fmt.Sprintf("used %d times ≥ max_use_count %d", d.JobsDone, maxUse)))
			excess--
		case excess > 0 && now.Sub(d.idleSince()) >= set.IdleTime:
			why := fmt.Sprintf("idle %s ≥ idle_time %s and %d instances exist where %d are required",
				secs(now.Sub(d.idleSince())), secs(set.IdleTime), live, required)
			out = append(out, release(name, d, why))
			excess--
		}
	}
	return out
}
