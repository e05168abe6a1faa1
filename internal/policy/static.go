package policy

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/shoalci/shoal/internal/config"
)

// The static baseline: N Droplets always on, as a fleet of manually
// registered runners would be. Idle ones above N (after N was lowered) are
// released; busy ones are left to finish.

var staticEntry = Entry{
	Name: "static",
	Doc:  "a fixed fleet: instances Droplets per pool, always on",
	Params: append([]ParamDoc{
		{"instances", "Droplets per pool (default: the pool's min_instances, at least 1)", 0},
	}, settingParams...),
	Grid: func() []Params {
		return grid([]string{"instances"}, [][]float64{{1, 2, 4, 8, 16, 32}})
	},
	new: func(p Params) Policy { return &Static{params: p} },
}

// Static is the fixed-fleet baseline.
type Static struct {
	params Params
}

var _ Policy = (*Static)(nil)

func (p *Static) Name() string   { return "static" }
func (p *Static) Params() Params { return p.params }

// Acceptance: always-on runners take a job when a slot is free.
func (p *Static) Acceptance(s config.Settings) Acceptance {
	s = p.params.overrideSettings(s)
	return Acceptance{Mode: AcceptOnFreeSlot, SlotsPerDroplet: s.CapacityPerInstance, Limit: p.instances(s) * s.CapacityPerInstance}
}

func (p *Static) instances(s config.Settings) int {
	n := p.params.intOr("instances", max(s.MinInstances, 1))
	return min(n, s.MaxInstances)
}

// Decide implements Policy.
func (p *Static) Decide(s Snapshot, prev State) ([]Decision, State) {
	var out []Decision
	for i := range s.Pools {
		pool := &s.Pools[i]
		set := p.params.overrideSettings(pool.Settings)
		want := p.instances(set)
		f := summarise(pool.Droplets, set.CapacityPerInstance)
		out = deleteDrained(set.Pool, pool.Droplets, out)
		if n := min(want-f.live(), set.MaxInstances-f.total); n > 0 {
			out = append(out, Decision{Kind: Create, Pool: set.Pool, Count: n,
				Reason: fmt.Sprintf("static fleet of %d; %d ready or booting", want, f.live())})
		}
		extra := f.live() - want
		if extra <= 0 {
			continue
		}
		var idle []*Droplet
		for j := range pool.Droplets {
			if d := &pool.Droplets[j]; d.State == Ready && d.RunningJobs == 0 {
				idle = append(idle, d)
			}
		}
		slices.SortFunc(idle, func(a, b *Droplet) int { return cmp.Compare(a.ID, b.ID) })
		for _, d := range idle[:min(extra, len(idle))] {
			out = append(out, release(set.Pool, d, fmt.Sprintf("static fleet of %d; %d ready or booting", want, f.live())))
		}
	}
	return out, prev
}
