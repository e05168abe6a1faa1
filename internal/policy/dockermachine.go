package policy

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/shoalci/shoal/internal/config"
)

// The docker+machine baseline: GitLab Runner's Docker Machine executor
// autoscaler, as its code (executors/docker/machine/provider.go: Acquire,
// updateMachines/updateMachine, createMachines, Use, Release) and its
// documentation (docs/configuration/autoscale.md) describe it. Each rule below
// says where it comes from. One Decide stands for one Acquire pass, which
// GitLab Runner runs on every job request (every check_interval, 3 s).
//
// Config mapping: the pool's idle_count, idle_time, scale_factor and
// max_instances are [runners.machine] IdleCount, IdleTime, IdleScaleFactor and
// the runner's limit; a matching [[pool.policy]] period plays the role of
// [[runners.machine.autoscaling]] (the last matching period wins, in both).
// docker+machine has no min_instances: it is ignored.

var dockerMachineEntry = Entry{
	Name: "docker-machine",
	Doc:  "GitLab Runner's docker+machine autoscaler: keeps IdleCount idle machines, one job per machine, creation capped by MaxGrowthRate",
	Params: append([]ParamDoc{
		{"idle_count_min", "IdleCountMin: fewest idle machines when IdleScaleFactor is set (GitLab's default 1)", 0},
		{"max_growth_rate", "MaxGrowthRate: most machines being created at once (0: no cap)", 0},
		{"max_builds", "MaxBuilds: remove a machine after this many jobs (0: never)", 0},
	}, settingParams...),
	Grid: func() []Params {
		return grid([]string{"idle_count", "idle_time", "max_growth_rate"},
			[][]float64{{0, 1, 2, 5, 10, 20}, {300, 1800}, {0, 3}})
	},
	new: func(p Params) Policy { return &DockerMachine{params: p} },
}

// DockerMachine is the docker+machine baseline.
type DockerMachine struct {
	params Params
}

var _ Policy = (*DockerMachine)(nil)

func (p *DockerMachine) Name() string   { return "docker-machine" }
func (p *DockerMachine) Params() Params { return p.params }

// Acceptance: "Docker Machine autoscaler creates one container per VM,
// regardless of the limit and concurrent configuration" (autoscale.md), so one
// slot per Droplet. Acquire returns "no free machines that can process builds"
// when IdleCount != 0 and no machine is idle: the runner asks GitLab for no
// job (AcceptOnFreeSlot). With IdleCount = 0 Acquire succeeds without a
// machine, and Use creates one inside the job (AcceptThenProvision); the
// runner then takes jobs up to its limit. When several machines are free,
// findFreeMachine takes the newest first.
func (p *DockerMachine) Acceptance(s config.Settings) Acceptance {
	s = p.params.overrideSettings(s)
	mode := AcceptOnFreeSlot
	if s.IdleCount == 0 {
		mode = AcceptThenProvision
	}
	return Acceptance{Mode: mode, SlotsPerDroplet: 1, Limit: s.MaxInstances, DecideEvery: CheckInterval}
}

// idleTarget is the number of idle machines to keep. Without IdleScaleFactor
// it is IdleCount. With it (GitLab Runner 14.5, MR !3179: "the number of Idle
// VMs should be a factor of in-use VMs"), it is IdleScaleFactor × machines in
// use, never above IdleCount and never below IdleCountMin (default 1,
// introduced "to prevent from a deadlock").
func (p *DockerMachine) idleTarget(s config.Settings, inUse int) int {
	if s.ScaleFactor <= 0 {
		return s.IdleCount
	}
	n := int(math.Ceil(s.ScaleFactor * float64(inUse)))
	n = max(n, p.params.intOr("idle_count_min", 1))
	return min(n, s.IdleCount)
}

// Decide implements Policy.
func (p *DockerMachine) Decide(s Snapshot, prev State) ([]Decision, State) {
	var out []Decision
	for i := range s.Pools {
		out = p.decidePool(s.Now, &s.Pools[i], out)
	}
	return out, prev
}

func (p *DockerMachine) decidePool(now time.Time, pool *Pool, out []Decision) []Decision {
	set := p.params.overrideSettings(pool.Settings)
	name := set.Pool
	limit := set.MaxInstances
	maxBuilds := p.params.intOr("max_builds", 0)
	growth := p.params.intOr("max_growth_rate", 0)

	out = deleteDrained(name, pool.Droplets, out)

	// updateMachines walks the machines in list order (names carry the
	// creation time, so oldest first), adding each to the counts only after
	// judging it: the first IdleCount idle machines are the ones kept.
	order := make([]*Droplet, 0, len(pool.Droplets))
	inUse := 0
	for i := range pool.Droplets {
		d := &pool.Droplets[i]
		order = append(order, d)
		if d.RunningJobs > 0 {
			inUse++
		}
	}
	slices.SortFunc(order, func(a, b *Droplet) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	idleCount := p.idleTarget(set, inUse)

	var total, idle, creating int
	for _, d := range order {
		isIdle := d.State == Ready && d.RunningJobs == 0
		if isIdle {
			var why string
			switch {
			// updateMachine and Release: "Too many builds" once UsedCount ≥ MaxBuilds.
			case maxBuilds > 0 && d.JobsDone >= maxBuilds:
				why = fmt.Sprintf("too many builds: %d ≥ MaxBuilds %d", d.JobsDone, maxBuilds)
			// updateMachine: "Too many machines" when Total() ≥ limit.
			case limit > 0 && total >= limit:
				why = fmt.Sprintf("too many machines: %d ≥ limit %d", total, limit)
			// updateMachine: idle longer than IdleTime while the idle machines
			// already counted reach IdleCount: "Too many idle machines".
			case now.Sub(d.idleSince()) > set.IdleTime && idle >= idleCount:
				why = fmt.Sprintf("too many idle machines: idle %s > IdleTime %s and %d idle ≥ IdleCount %d",
					secs(now.Sub(d.idleSince())), secs(set.IdleTime), idle, idleCount)
			}
			if why != "" {
				out = append(out, release(name, d, why))
				total++ // a machine being removed still counts in Total()
				continue
			}
		}
		total++
		switch {
		case d.State == Booting:
			creating++
		case isIdle:
			idle++
		}
	}

	// createMachines: "for Available() < IdleCount" create idle machines, while
	// under limit and, since MaxGrowthRate, while fewer than MaxGrowthRate are
	// being created ("requests ... are put on hold until the number of machines
	// being created falls below MaxGrowthRate", autoscale.md).
	n := 0
	for idle+creating+n < idleCount && (limit == 0 || total+n < limit) && (growth == 0 || creating+n < growth) {
		n++
	}
	if n > 0 {
		why := fmt.Sprintf("%d idle + %d creating < IdleCount %d", idle, creating, idleCount)
		if growth > 0 && creating+n >= growth {
			why += fmt.Sprintf("; MaxGrowthRate %d caps machines being created", growth)
		}
		out = append(out, Decision{Kind: Create, Pool: name, Count: n, Reason: why})
	}

	// IdleCount = 0: every job the runner took without a machine creates its
	// own in Use ("machines are always created on-demand before each job",
	// MR !4314), bounded by limit (canCreateOnDemand) but not by MaxGrowthRate.
	if w := len(pool.Waiting); w > 0 && idleCount == 0 {
		need := w - creating - idle
		if room := limit - total - n; limit > 0 && need > room {
			need = room
		}
		if need > 0 {
			out = append(out, Decision{Kind: Create, Pool: name, Count: need,
				Reason: fmt.Sprintf("IdleCount 0: %d accepted jobs have no machine (%d creating, %d idle); each job creates its own", w, creating, idle)})
		}
	}
	return out
}
