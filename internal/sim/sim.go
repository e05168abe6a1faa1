// Package sim replays a CI trace in virtual time through shoal's real
// autoscaler: the policy, the reconciler, the cloud layer (godo against the
// DigitalOcean emulator) and the demand source (client-go against the GitLab
// emulator), and measures what users feel (job waits, pipeline slowdown) and
// pay (the emulator's billing ledger).
package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/trace"
)

// Options describe one simulation.
type Options struct {
	Trace *trace.Trace
	// Config gives the pools, reconcile interval, rate budget and billing
	// model; nil means DefaultConfig(Trace).
	Config *config.Config
	Policy policy.Policy
	Seed   uint64
	// BootDelay (default 45–75 s) and RegisterDelay (default 20 s) model a runner Droplet's start.
	BootDelay     doemu.Range
	RegisterDelay time.Duration
	// Sample is the report's time step (default 1 minute; negative: no series).
	Sample time.Duration
	// WrapDO wraps the DigitalOcean emulator's handler (tests check the contract with it).
	WrapDO func(http.Handler) http.Handler
	// KeepJobs fills Result.JobWaits, one record per trace job.
	KeepJobs bool
}

// Stats summarise a distribution.
type Stats struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Quantiles are a distribution's median and 95th percentile.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
}

// Result is what a simulation measured.
type Result struct {
	Trace          string        `json:"trace"`
	Policy         string        `json:"policy"`
	Params         policy.Params `json:"params"`
	Jobs           int           `json:"jobs"`
	UnfinishedJobs int           `json:"unfinished_jobs"`
	WaitS          Stats         `json:"wait_s"`
	// ColdStartS is the shortest boot plus registration; JobsWaitedColdStart
	// counts the jobs that waited at least that long, as long as a Droplet
	// made for them would take (found no slot ready or nearly so), those
	// still waiting when the run ended included.
	ColdStartS          float64   `json:"cold_start_s"`
	JobsWaitedColdStart int       `json:"jobs_waited_cold_start"`
	PipelineSlowdown    Quantiles `json:"pipeline_slowdown"`
	CostUSD             float64   `json:"cost_usd"`
	LowerBoundUSD       float64   `json:"lower_bound_usd"`
	CostRatio           float64   `json:"cost_ratio"`
	DropletsCreated     int       `json:"droplets_created"`
	PeakDroplets        int       `json:"peak_droplets"`
	DropletHours        float64   `json:"droplet_hours"`
	// BootHours are Droplet-hours before the runner registered; JobHours are
	// the finished jobs' run time. With one job per Droplet, the rest of
	// DropletHours is idle.
	BootHours               float64   `json:"boot_hours"`
	JobHours                float64   `json:"job_hours"`
	APIRequests             int       `json:"api_requests"`
	APIRequestsMaxPerMinute int       `json:"api_requests_max_per_minute"`
	RateLimitedResponses    int       `json:"rate_limited_responses"`
	Reconciles              int       `json:"reconciles"`
	SimulatedHours          float64   `json:"simulated_hours"`
	WallS                   float64   `json:"wall_s"`
	Series                  *Series   `json:"-"`
	JobWaits                []JobWait `json:"-"`
}

// JobWait is what one trace job went through (Options.KeepJobs).
type JobWait struct {
	JobID, PipelineID int64 // the trace's IDs
	Stage             int
	Tags              []string
	// Queued is when it became pending, since the start of the trace, and
	// Wait from then until its script started, or until the run ended if it
	// never did. Both are zero for a job that never became pending: its
	// earlier stage never finished.
	Queued, Wait                     time.Duration
	BecamePending, Started, Finished bool
}

// Series are the report's time series, one point per sample.
type Series struct {
	Start                    time.Time // the first sample's clock time
	Step                     time.Duration
	Pending, Running         []int
	SlotsBooting, SlotsReady []int
	CostUSD                  []float64
}

// DefaultPoolSize is the Droplet size of the pools a simulation makes itself.
const DefaultPoolSize = "s-2vcpu-4gb"

// DefaultConfig makes one pool per distinct tag set in the trace, the same for
// every policy: size s-2vcpu-4gb, one job per Droplet, room for the biggest burst.
func DefaultConfig(t *trace.Trace) *config.Config {
	c := config.Default()
	for _, tags := range t.TagSets() {
		p := config.DefaultPool(strings.Join(tags, "-"))
		p.Tags = tags
		p.Size = DefaultPoolSize
		p.MaxInstances = 300
		c.Pools = append(c.Pools, p)
	}
	return &c
}

var errNoJobs = errors.New("the trace has no jobs: there is nothing to simulate")

// Check refuses what no policy could simulate usefully: a trace without jobs,
// or jobs no pool of the config takes (they would wait to the end of every
// run; Run accounts for such jobs, but a user wants to hear of them first).
func (o Options) Check() error {
	if o.Trace == nil || o.Trace.Jobs() == 0 {
		return errNoJobs
	}
	if o.Config == nil {
		return nil // DefaultConfig makes a pool per tag set
	}
	var orphans []string
	for _, set := range o.Trace.TagSets() {
		if !slices.ContainsFunc(o.Config.Pools, func(p config.Pool) bool { return p.Takes(set) }) {
			name := strings.Join(set, ";")
			if name == "" {
				name = "(untagged)"
			}
			orphans = append(orphans, name)
		}
	}
	if len(orphans) > 0 {
		return fmt.Errorf("no pool takes the jobs tagged %s: add a pool whose tags include theirs (or run_untagged = true for untagged jobs), or leave out --config to get a pool per tag set",
			strings.Join(orphans, ", "))
	}
	return nil
}

// Run simulates.
func Run(ctx context.Context, o Options) (Result, error) {
	started := time.Now() // wall time, for the report only
	if o.Trace == nil || o.Trace.Jobs() == 0 {
		return Result{}, errNoJobs
	}
	if o.Config == nil {
		o.Config = DefaultConfig(o.Trace)
	}
	if o.Sample == 0 {
		o.Sample = time.Minute
	}
	cfg := o.Config
	w, err := NewWorld(WorldOptions{Seed: o.Seed, Pools: cfg.Pools, Billing: cfg.Billing, Policy: o.Policy,
		BootDelay: o.BootDelay, RegisterDelay: o.RegisterDelay,
		RequestsPerMinute: cfg.RequestsPerMinute(), RequestsPerHour: cfg.RequestsPerHour(), WrapDO: o.WrapDO})
	if err != nil {
		return Result{}, err
	}
	start := w.Clock.Now()

	// Pipelines arrive at their trace times; stage k follows stage k-1 inside the emulator.
	refs := make([]glemu.PipelineRef, len(o.Trace.Pipelines))
	var createErr error
	for i, p := range o.Trace.Pipelines {
		w.Clock.AfterFunc(p.CreatedAt, func() {
			ref, err := w.GL.CreatePipeline(w.ProjectID, glemu.PipelineStages(p))
			if err != nil && createErr == nil {
				createErr = fmt.Errorf("pipeline %d: %w", p.ID, err)
			}
			refs[i] = ref
		})
	}
	var lastFinish time.Time
	w.GL.Observe(func(ev glemu.Event) {
		if !ev.Job.FinishedAt.IsZero() {
			lastFinish = ev.Job.FinishedAt
		}
	})
	series := &Series{Start: start, Step: o.Sample}
	if o.Sample > 0 {
		sample(w, series)
		var tick func()
		tick = func() { sample(w, series); w.Clock.AfterFunc(o.Sample, tick) }
		w.Clock.AfterFunc(o.Sample, tick)
	}

	windowEnd := start.Add(o.Trace.End())
	hardStop := windowEnd.Add(6 * time.Hour)
	// Each policy decides as its original does: shoal on its interval and at
	// once on a Job Hook; GitLab Runner's autoscalers on their own loops.
	acc := o.Policy.Acceptance(cfg.Pools[0].Effective(start))
	interval := cfg.ReconcileInterval
	if acc.DecideEvery > 0 {
		interval = acc.DecideEvery
	}
	const minGap = 2 * time.Second // between reconciles a Job Hook triggers
	var (
		lastReconcile time.Time
		nextReconcile = start
		hookPending   bool // a Job Hook reported a pending job since the last reconcile
		perStep       []stepCount
		reconciles    int
	)
	for {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		now := w.Clock.Now()
		select {
		case <-w.Webhook.Pending():
			hookPending = hookPending || acc.DecideOnJobHook
		default:
		}
		reconciled := false
		if !now.Before(nextReconcile) || (hookPending && now.Sub(lastReconcile) >= minGap) {
			reconciled, hookPending = true, false
			if err := w.FollowSettings(now); err != nil {
				return Result{}, err
			}
			rep, err := w.Reconciler.Step(ctx)
			if err != nil && ctx.Err() != nil {
				return Result{}, err
			}
			// A failed step (an API error) does nothing; the next one tries again.
			perStep = append(perStep, stepCount{at: now, requests: rep.Requests})
			reconciles++
			lastReconcile, nextReconcile = now, now.Add(interval)
		}
		if createErr != nil {
			return Result{}, createErr
		}
		if !now.Before(hardStop) || reconciled && now.After(windowEnd) && done(w, lastFinish) {
			break
		}
		// Move to the next thing that happens: an event, or the next reconcile.
		target := nextReconcile
		if hookPending && lastReconcile.Add(minGap).Before(target) {
			target = lastReconcile.Add(minGap)
		}
		if next, ok := w.Clock.Next(); ok && next.Before(target) {
			target = next
		}
		w.Clock.AdvanceTo(target)
	}
	res := measure(w, o, refs, start)
	res.Reconciles = reconciles
	res.APIRequestsMaxPerMinute = maxPerMinute(perStep)
	if o.Sample > 0 {
		res.Series = series
	}
	res.WallS = time.Since(started).Seconds()
	return res, nil
}

// done: every job finished and no Droplet left (a fleet that never shrinks
// ends the run an hour after the last job does).
func done(w *World, lastFinish time.Time) bool {
	c := w.GL.Counts()
	if c.Created+c.Pending+c.Running > 0 {
		return false
	}
	return w.DO.LiveDroplets() == 0 || w.Clock.Since(lastFinish) >= time.Hour
}

func sample(w *World, s *Series) {
	c := w.GL.Counts()
	booting, ready := w.Fleet.Slots()
	s.Pending = append(s.Pending, c.Pending)
	s.Running = append(s.Running, c.Running)
	s.SlotsReady = append(s.SlotsReady, ready)
	s.SlotsBooting = append(s.SlotsBooting, booting)
	s.CostUSD = append(s.CostUSD, w.DO.BilledUSD(w.Clock.Now()))
}

type stepCount struct {
	at       time.Time
	requests int
}

// maxPerMinute is the most requests in any sliding minute.
func maxPerMinute(steps []stepCount) int {
	best, sum, lo := 0, 0, 0
	for _, s := range steps {
		sum += s.requests
		for s.at.Sub(steps[lo].at) >= time.Minute {
			sum -= steps[lo].requests
			lo++
		}
		best = max(best, sum)
	}
	return best
}

func measure(w *World, o Options, refs []glemu.PipelineRef, start time.Time) Result {
	res := Result{Trace: o.Trace.Name, Policy: o.Policy.Name(), Params: o.Policy.Params(), Jobs: o.Trace.Jobs()}
	if res.Params == nil {
		res.Params = policy.Params{}
	}
	jobs := w.GL.Jobs()
	byID := make(map[int64]glemu.JobInfo, len(jobs))
	end := w.Clock.Now()
	// Every job that became pending has a wait: one still pending at the end
	// waited until then, so with unfinished jobs the figures are lower bounds.
	var waits []float64
	var jobTime time.Duration
	finished := 0
	for _, j := range jobs {
		byID[j.ID] = j
		if wait, ok := waited(j, end); ok {
			waits = append(waits, wait.Seconds())
			if wait >= w.ColdStart {
				res.JobsWaitedColdStart++
			}
		}
		if j.Status == glemu.StatusSuccess {
			finished++
			jobTime += j.Duration
		}
	}
	res.ColdStartS = w.ColdStart.Seconds()
	res.UnfinishedJobs = res.Jobs - finished
	res.WaitS = summarize(waits)

	var slow []float64
	for i, p := range o.Trace.Pipelines {
		var last time.Time
		complete := len(refs[i].JobIDs) > 0
		for _, stage := range refs[i].JobIDs {
			for _, id := range stage {
				j := byID[id]
				if j.Status != glemu.StatusSuccess {
					complete = false
				}
				if j.FinishedAt.After(last) {
					last = j.FinishedAt
				}
			}
		}
		if complete {
			slow = append(slow, last.Sub(start.Add(p.CreatedAt)).Seconds()/p.ZeroWaitMakespan().Seconds())
		}
	}
	sl := summarize(slow)
	res.PipelineSlowdown = Quantiles{P50: sl.P50, P95: sl.P95}
	if o.KeepJobs {
		res.JobWaits = jobWaits(o.Trace, refs, byID, start, end)
	}

	res.CostUSD = round(w.DO.BilledUSD(end), 4)
	res.LowerBoundUSD = round(lowerBound(o.Trace, o.Config), 4)
	if res.LowerBoundUSD > 0 {
		res.CostRatio = round(res.CostUSD/res.LowerBoundUSD, 3)
	}
	charges := w.DO.Charges()
	res.DropletsCreated = len(charges)
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	var hours float64
	for _, c := range charges {
		stop := c.End
		if stop.IsZero() {
			stop = end
		}
		hours += stop.Sub(c.Start).Hours()
		edges = append(edges, edge{c.Start, 1}, edge{stop, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.d - b.d // a Droplet gone at t is not alive with one made at t
	})
	live := 0
	for _, e := range edges {
		live += e.d
		res.PeakDroplets = max(res.PeakDroplets, live)
	}
	res.DropletHours = round(hours, 2)
	res.BootHours = round(w.Fleet.BootTime().Hours(), 2)
	res.JobHours = round(jobTime.Hours(), 2)
	st := w.DO.Stats()
	res.APIRequests, res.RateLimitedResponses = st.Requests, st.RateLimited
	res.SimulatedHours = round(end.Sub(start).Hours(), 2)
	return res
}

// waited is how long a job waited for a runner: until its script started, or
// until end if it never did. ok is false if it never became pending.
func waited(j glemu.JobInfo, end time.Time) (time.Duration, bool) {
	switch {
	case j.QueuedAt.IsZero():
		return 0, false
	case j.ExecStartedAt.IsZero():
		return end.Sub(j.QueuedAt), true
	}
	return j.Wait(), true
}

func jobWaits(t *trace.Trace, refs []glemu.PipelineRef, byID map[int64]glemu.JobInfo, start, end time.Time) []JobWait {
	out := make([]JobWait, 0, t.Jobs())
	for i, p := range t.Pipelines {
		for k, stage := range p.Stages {
			for n, j := range stage {
				jw := JobWait{JobID: j.ID, PipelineID: p.ID, Stage: k, Tags: j.Tags}
				if k < len(refs[i].JobIDs) && n < len(refs[i].JobIDs[k]) {
					info := byID[refs[i].JobIDs[k][n]]
					if wait, ok := waited(info, end); ok {
						jw.BecamePending, jw.Started = true, !info.ExecStartedAt.IsZero()
						jw.Queued, jw.Wait = info.QueuedAt.Sub(start), wait
					}
					jw.Finished = info.Status == glemu.StatusSuccess
				}
				out = append(out, jw)
			}
		}
	}
	return out
}

// lowerBound prices every job-second on Droplets packed perfectly, no idle,
// no boot, of the cheapest pool (per job slot) that can take it.
func lowerBound(t *trace.Trace, c *config.Config) float64 {
	var usd float64
	for _, p := range t.Pipelines {
		for _, stage := range p.Stages {
			for _, j := range stage {
				if perSlot, ok := cheapestSlot(c.Pools, j.Tags); ok {
					usd += j.Duration.Hours() * perSlot
				}
			}
		}
	}
	return usd
}

// cheapestSlot is the lowest hourly price of one job slot among the pools
// whose runners can take a job with jobTags.
func cheapestSlot(pools []config.Pool, jobTags []string) (float64, bool) {
	best, found := 0.0, false
	for _, p := range pools {
		if !p.Takes(jobTags) {
			continue
		}
		if price := doemu.HourlyPrice(p.Size) / float64(max(p.CapacityPerInstance, 1)); !found || price < best {
			best, found = price, true
		}
	}
	return best, found
}

func summarize(xs []float64) Stats {
	if len(xs) == 0 {
		return Stats{}
	}
	slices.Sort(xs)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(xs)))) - 1
		return round(xs[max(0, min(i, len(xs)-1))], 3)
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return Stats{P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: round(xs[len(xs)-1], 3), Mean: round(sum/float64(len(xs)), 3)}
}

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}
