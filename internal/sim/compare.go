package sim

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/shoalci/shoal/internal/policy"
)

// Setting is one policy with its parameters.
type Setting struct {
	Policy string
	Params policy.Params
}

func (s Setting) String() string {
	if len(s.Params) == 0 {
		return s.Policy
	}
	return s.Policy + " " + s.Params.String()
}

// CompareSettings are shoal's policy with its defaults, then every registered
// policy over its parameter grid.
func CompareSettings() []Setting {
	out := []Setting{{Policy: "shoal", Params: policy.Params{}}}
	for _, name := range policy.Names() {
		e, _ := policy.Lookup(name)
		for _, p := range e.Grid() {
			out = append(out, Setting{Policy: name, Params: p})
		}
	}
	return out
}

// RunAll simulates every setting on the same trace and options, in parallel
// (each simulation is single-threaded and independent), in the settings' order.
func RunAll(ctx context.Context, o Options, settings []Setting, progress func(done, total int, r Result)) ([]Result, error) {
	results := make([]Result, len(settings))
	errs := make([]error, len(settings))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				pol, err := policy.ByName(settings[i].Policy, settings[i].Params)
				if err != nil {
					errs[i] = err
					continue
				}
				oi := o
				oi.Policy = pol
				results[i], errs[i] = Run(ctx, oi)
				mu.Lock()
				done++
				if progress != nil && errs[i] == nil {
					progress(done, len(settings), results[i])
				}
				mu.Unlock()
			}
		}()
	}
	for i := range settings {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", settings[i], err)
		}
	}
	return results, ctx.Err()
}

// Pareto returns the indexes of the results no other result beats on both p95
// wait and cost (ties count as not beaten), by increasing cost. A run that
// left jobs unfinished did not do the work: it is on no frontier.
func Pareto(rs []Result) []int {
	var front []int
	for i, a := range rs {
		dominated := a.UnfinishedJobs > 0
		for j, b := range rs {
			if i != j && b.UnfinishedJobs == 0 && b.WaitS.P95 <= a.WaitS.P95 && b.CostUSD <= a.CostUSD &&
				(b.WaitS.P95 < a.WaitS.P95 || b.CostUSD < a.CostUSD) {
				dominated = true
				break
			}
		}
		if !dominated {
			front = append(front, i)
		}
	}
	slices.SortFunc(front, func(a, b int) int {
		if rs[a].CostUSD < rs[b].CostUSD {
			return -1
		}
		if rs[a].CostUSD > rs[b].CostUSD {
			return 1
		}
		return 0
	})
	return front
}

// Verdict is how shoal (rs[0]) stands against the baselines.
type Verdict struct {
	// Beaten lists baseline settings better than shoal on both p95 wait and cost.
	Beaten []int
	// DockerMachine is the docker-machine setting nearest shoal in cost among
	// those that cost as much or more: the same money spent the old way (-1 if
	// none costs as much as shoal).
	DockerMachine int
	// HalfWait reports whether shoal's p95 wait is at most half of that setting's.
	HalfWait bool
}

// Judge compares rs[0] (shoal) with the others.
func Judge(rs []Result) Verdict {
	v := Verdict{DockerMachine: -1}
	s := rs[0]
	for i, r := range rs[1:] {
		i++
		if r.Policy == "shoal" || r.UnfinishedJobs > 0 {
			continue
		}
		if r.WaitS.P95 < s.WaitS.P95 && r.CostUSD < s.CostUSD {
			v.Beaten = append(v.Beaten, i)
		}
		if r.Policy == "docker-machine" && r.CostUSD >= s.CostUSD &&
			(v.DockerMachine < 0 || r.CostUSD < rs[v.DockerMachine].CostUSD) {
			v.DockerMachine = i
		}
	}
	v.HalfWait = v.DockerMachine >= 0 && s.WaitS.P95 <= rs[v.DockerMachine].WaitS.P95/2
	return v
}

// Findings says, a sentence each, how shoal's defaults (rs[0]) stand against
// the other settings of a comparison: what beats them, the docker-machine
// setting that spends the same money, and how many jobs waited a cold start.
func Findings(rs []Result) []string {
	if len(rs) == 0 {
		return nil
	}
	v := Judge(rs)
	s := rs[0]
	out := []string{fmt.Sprintf("shoal (defaults): p95 wait %.1f s, cost $%.2f (%.2f× the lower bound $%.2f).", s.WaitS.P95, s.CostUSD, s.CostRatio, s.LowerBoundUSD)}
	if s.UnfinishedJobs > 0 {
		// Its waits are lower bounds and its cost is that of less work: no
		// comparison would be fair.
		return append(out, fmt.Sprintf("shoal left %d of %d jobs unfinished, so it is not compared: raise max_instances, or look for errors above.", s.UnfinishedJobs, s.Jobs))
	}
	if len(v.Beaten) == 0 {
		out = append(out, "No baseline setting beats shoal on both p95 wait and cost.")
	} else {
		beaten := make([]string, len(v.Beaten))
		for k, i := range v.Beaten {
			beaten[k] = fmt.Sprintf("%s (p95 %.1f s, $%.2f)", Setting{Policy: rs[i].Policy, Params: rs[i].Params}, rs[i].WaitS.P95, rs[i].CostUSD)
		}
		out = append(out, fmt.Sprintf("%d baseline settings beat shoal on both p95 wait and cost: %s.", len(v.Beaten), strings.Join(beaten, "; ")))
	}
	if v.DockerMachine < 0 {
		out = append(out, "No docker-machine setting costs as much as shoal.")
	} else {
		dm := rs[v.DockerMachine]
		line := fmt.Sprintf("docker-machine at the nearest equal or higher cost: %s, p95 %.1f s at $%.2f",
			Setting{Policy: dm.Policy, Params: dm.Params}, dm.WaitS.P95, dm.CostUSD)
		if dm.WaitS.P95 > 0 {
			line += fmt.Sprintf("; shoal's p95 is %.0f%% of it (target: at most 50%%)", 100*s.WaitS.P95/dm.WaitS.P95)
		}
		out = append(out, line+".")
	}
	if s.Jobs > 0 {
		out = append(out, fmt.Sprintf("%d of shoal's %d jobs (%.1f%%) waited at least a cold start (%.0f s, the shortest boot plus registration); its p95 wait is shorter than a cold start only when fewer than 5%% do.",
			s.JobsWaitedColdStart, s.Jobs, 100*float64(s.JobsWaitedColdStart)/float64(s.Jobs), s.ColdStartS))
	}
	return out
}

// WriteTable prints results as a table.
func WriteTable(w io.Writer, rs []Result, mark map[int]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tparams\twait p50 s\twait mean s\twait p95 s\twait max s\tslowdown p95\tcost $\tcost/bound\tdroplets\tpeak\tAPI req\tmax/min\t429s\tunfinished\t\t")
	for i, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n",
			r.Policy, paramsOrDash(r.Params), r.WaitS.P50, r.WaitS.Mean, r.WaitS.P95, r.WaitS.Max, r.PipelineSlowdown.P95,
			r.CostUSD, r.CostRatio, r.DropletsCreated, r.PeakDroplets, r.APIRequests, r.APIRequestsMaxPerMinute,
			r.RateLimitedResponses, r.UnfinishedJobs, mark[i])
	}
	tw.Flush()
}

func paramsOrDash(p policy.Params) string {
	if s := p.String(); s != "" {
		return strings.ReplaceAll(s, " ", ",")
	}
	return "-"
}
