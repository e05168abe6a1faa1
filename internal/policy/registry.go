package policy

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoalci/shoal/internal/config"
)

// Params are a policy's parameters by name; durations are in seconds. A
// parameter named like a pool setting (idle_count, idle_time, scale_factor,
// scale_factor_limit, max_instances, capacity_per_instance) overrides that
// setting for every pool and period; the others are the policy's own.
type Params map[string]float64

// String renders the parameters sorted by name, e.g. "idle_count=2 idle_time=600".
func (p Params) String() string {
	keys := slices.Sorted(maps.Keys(p))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(p[k], 'g', -1, 64)
	}
	return strings.Join(parts, " ")
}

// has reports whether k is set.
func (p Params) has(k string) bool {
	_, ok := p[k]
	return ok
}

func (p Params) intOr(k string, def int) int {
	if v, ok := p[k]; ok {
		return int(v)
	}
	return def
}

func (p Params) floatOr(k string, def float64) float64 {
	if v, ok := p[k]; ok {
		return v
	}
	return def
}

func (p Params) durOr(k string, def time.Duration) time.Duration {
	if v, ok := p[k]; ok {
		return time.Duration(v * float64(time.Second))
	}
	return def
}

// overrideSettings applies the parameters that share a pool setting's name.
func (p Params) overrideSettings(s config.Settings) config.Settings {
	s.IdleCount = p.intOr("idle_count", s.IdleCount)
	s.IdleTime = p.durOr("idle_time", s.IdleTime)
	s.ScaleFactor = p.floatOr("scale_factor", s.ScaleFactor)
	s.ScaleFactorLimit = p.intOr("scale_factor_limit", s.ScaleFactorLimit)
	s.MaxInstances = p.intOr("max_instances", s.MaxInstances)
	s.CapacityPerInstance = p.intOr("capacity_per_instance", s.CapacityPerInstance)
	if s.MinInstances > s.MaxInstances {
		s.MinInstances = s.MaxInstances
	}
	return s
}

// ParamDoc documents one parameter.
type ParamDoc struct {
	Name string
	Doc  string
	// Min is the smallest valid value.
	Min float64
}

// Entry is one registered policy.
type Entry struct {
	Name string
	Doc  string
	// Params lists the parameters the policy accepts.
	Params []ParamDoc
	// Grid is the set of settings the simulator's --compare runs.
	Grid func() []Params
	new  func(Params) Policy
}

var settingParams = []ParamDoc{
	{"idle_count", "spare job slots to keep (overrides the pool's idle_count)", 0},
	{"idle_time", "seconds an idle Droplet may stay (overrides the pool's idle_time)", 0},
	{"scale_factor", "spare slots as a factor of slots in use (overrides the pool's scale_factor)", 0},
	{"scale_factor_limit", "cap on the slots scale_factor asks for (overrides the pool's)", 0},
	{"max_instances", "most Droplets per pool (overrides the pool's max_instances)", 1},
	{"capacity_per_instance", "jobs per Droplet (overrides the pool's capacity_per_instance)", 1},
}

var registry = []Entry{shoalEntry, dockerMachineEntry, taskscalerEntry, staticEntry}

// Names lists the registered policies, shoal's first.
func Names() []string {
	out := make([]string, len(registry))
	for i, e := range registry {
		out[i] = e.Name
	}
	return out
}

// Lookup returns the registry entry for name.
func Lookup(name string) (Entry, bool) {
	for _, e := range registry {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// ByName builds the named policy with params (nil for its defaults). Unknown
// policies and parameters, and values below a parameter's minimum, are errors.
func ByName(name string, params Params) (Policy, error) {
	e, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown policy %q (choose one of %s)", name, strings.Join(Names(), ", "))
	}
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		i := slices.IndexFunc(e.Params, func(d ParamDoc) bool { return d.Name == k })
		if i < 0 {
			known := make([]string, len(e.Params))
			for j, d := range e.Params {
				known[j] = d.Name
			}
			problems = append(problems, fmt.Sprintf("unknown parameter %q (known: %s)", k, strings.Join(known, ", ")))
			continue
		}
		if params[k] < e.Params[i].Min {
			problems = append(problems, fmt.Sprintf("%s must be at least %g, got %g", k, e.Params[i].Min, params[k]))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("policy %s: %s", name, strings.Join(problems, "; "))
	}
	p := Params{}
	maps.Copy(p, params)
	return e.new(p), nil
}

// grid builds the cross product of the given values per parameter, in a
// stable order (first parameter varies slowest).
func grid(names []string, values [][]float64) []Params {
	out := []Params{{}}
	for i, n := range names {
		var next []Params
		for _, base := range out {
			for _, v := range values[i] {
				p := Params{}
				maps.Copy(p, base)
				p[n] = v
				next = append(next, p)
			}
		}
		out = next
	}
	return out
}
