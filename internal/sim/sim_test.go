package sim_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/doemu/doemutest"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/sim"
	"github.com/shoalci/shoal/internal/trace"
)

// smallTrace: half an hour, a few pipelines of two stages, docker and docker;large jobs.
func smallTrace(t *testing.T) *trace.Trace {
	t.Helper()
	csv := `job_id,pipeline_id,stage,pipeline_created_s,duration_s,tags
1,1,0,60.0,120.0,docker
2,1,0,60.0,90.0,docker
3,1,1,60.0,300.0,docker;large
4,2,0,1800.0,60.0,docker
5,2,0,1800.0,60.0,docker
6,2,0,1800.0,60.0,docker
7,3,0,1810.0,200.0,docker
8,3,1,1810.0,100.0,docker
`
	return parseTrace(t, "small", csv)
}

func parseTrace(t *testing.T, name, csv string) *trace.Trace {
	t.Helper()
	tr, err := trace.Parse(strings.NewReader(csv), name)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func parseConfig(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func run(t *testing.T, tr *trace.Trace, name string, params policy.Params) sim.Result {
	t.Helper()
	return runWith(t, name, params, sim.Options{Trace: tr, Seed: 3,
		WrapDO: func(h http.Handler) http.Handler { return doemutest.NewValidator(t, h) }})
}

// runWith simulates o with the named policy.
func runWith(t *testing.T, name string, params policy.Params, o sim.Options) sim.Result {
	t.Helper()
	pol, err := policy.ByName(name, params)
	if err != nil {
		t.Fatal(err)
	}
	o.Policy = pol
	res, err := sim.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRunMeasures(t *testing.T) {
	tr := smallTrace(t)
	for _, name := range policy.Names() {
		t.Run(name, func(t *testing.T) {
			res := run(t, tr, name, nil)
			if res.Jobs != 8 || res.UnfinishedJobs != 0 {
				t.Fatalf("%d jobs, %d unfinished", res.Jobs, res.UnfinishedJobs)
			}
			// Lower bound: 990 job-seconds on s-2vcpu-4gb at $0.03571/h, one job per Droplet.
			if want := 990.0 / 3600 * 0.03571; math.Abs(res.LowerBoundUSD-want) > 1e-4 {
				t.Fatalf("lower bound %.5f, want %.5f", res.LowerBoundUSD, want)
			}
			if res.CostUSD < res.LowerBoundUSD || res.CostRatio < 1 {
				t.Fatalf("cost %.4f below the lower bound %.4f", res.CostUSD, res.LowerBoundUSD)
			}
			if res.PipelineSlowdown.P50 < 1 || res.WaitS.P95 < res.WaitS.P50 || res.WaitS.Max < res.WaitS.P99 {
				t.Fatalf("inconsistent figures: %+v %+v", res.WaitS, res.PipelineSlowdown)
			}
			if res.DropletsCreated == 0 || res.PeakDroplets == 0 || res.DropletHours <= 0 || res.APIRequests == 0 {
				t.Fatalf("fleet figures: %+v", res)
			}
			if res.RateLimitedResponses != 0 {
				t.Fatalf("%d responses were 429", res.RateLimitedResponses)
			}
			// One job per Droplet: Droplet time holds the job time and each
			// Droplet's boot (at least 45 s active + 20 s registration) besides.
			if want := 990.0 / 3600; math.Abs(res.JobHours-want) > 0.01 {
				t.Fatalf("job hours %.3f, want %.3f", res.JobHours, want)
			}
			if least := float64(res.DropletsCreated) * 65 / 3600; res.BootHours < least-0.01 || res.DropletHours < res.BootHours+res.JobHours-0.01 {
				t.Fatalf("droplet hours %.3f, boot %.3f (≥ %.3f), job %.3f", res.DropletHours, res.BootHours, least, res.JobHours)
			}
			if name != "static" && (res.WaitS.Max < 65 || res.JobsWaitedColdStart < 1) {
				t.Fatalf("from zero Droplets some job must wait at least a cold start; max wait %.1f s, %d did", res.WaitS.Max, res.JobsWaitedColdStart)
			}
			if res.ColdStartS != 65 || res.JobsWaitedColdStart > res.Jobs {
				t.Fatalf("cold start %.0f s (want 45 s boot + 20 s registration), %d of %d jobs waited one", res.ColdStartS, res.JobsWaitedColdStart, res.Jobs)
			}
		})
	}
}

func TestSameSeedSameFigures(t *testing.T) {
	tr := smallTrace(t)
	a, b := run(t, tr, "shoal", nil), run(t, tr, "shoal", nil)
	a.WallS, b.WallS, a.Series, b.Series = 0, 0, nil, nil
	if a.WaitS != b.WaitS || a.CostUSD != b.CostUSD || a.APIRequests != b.APIRequests || a.DropletsCreated != b.DropletsCreated {
		t.Fatalf("two runs with one seed differ:\n%+v\n%+v", a, b)
	}
}

func TestDefaultConfigHasAPoolPerTagSet(t *testing.T) {
	c := sim.DefaultConfig(smallTrace(t))
	if len(c.Pools) != 2 || c.Pools[0].Name != "docker" || c.Pools[1].Name != "docker-large" || c.Pools[1].Size != sim.DefaultPoolSize {
		t.Fatalf("pools %+v", c.Pools)
	}
}

func TestParetoAndJudge(t *testing.T) {
	r := func(pol string, p95, cost float64) sim.Result {
		return sim.Result{Policy: pol, WaitS: sim.Stats{P95: p95}, CostUSD: cost}
	}
	rs := []sim.Result{
		r("shoal", 40, 10),
		r("docker-machine", 90, 11), // dominated by shoal
		r("docker-machine", 30, 20), // faster, dearer: on the frontier
		r("taskscaler", 100, 8),     // cheaper, slower: on the frontier
		r("static", 35, 9),          // beats shoal on both
		r("static", 1, 1),           // would beat everything, but left jobs unfinished
	}
	rs[5].UnfinishedJobs = 10
	front := sim.Pareto(rs)
	if got := front; len(got) != 3 || got[0] != 3 || got[1] != 4 || got[2] != 2 {
		t.Fatalf("frontier %v, want [3 4 2] by cost", got)
	}
	v := sim.Judge(rs)
	if len(v.Beaten) != 1 || v.Beaten[0] != 4 {
		t.Fatalf("beaten by %v, want [4]", v.Beaten)
	}
	if v.DockerMachine != 1 || !v.HalfWait {
		t.Fatalf("docker-machine comparison %+v: want setting 1 (the nearest cost at or above shoal's, $11), whose 90 s p95 is over twice shoal's 40 s", v)
	}
}

func TestReportIsSelfContainedSVG(t *testing.T) {
	tr := smallTrace(t)
	res := run(t, tr, "shoal", nil)
	var buf bytes.Buffer
	if err := sim.WriteReport(&buf, "test", []sim.Result{res}, false); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, want := range []string{"<svg", "<polyline", "pending jobs", "slots ready", "cumulative cost"} {
		if !strings.Contains(html, want) {
			t.Fatalf("report lacks %q", want)
		}
	}
	for _, banned := range []string{"<script", "src=\"http", "href=\"http"} {
		if strings.Contains(html, banned) {
			t.Fatalf("report needs the network or a script: found %q", banned)
		}
	}
	if n := len(res.Series.Pending); n < int(tr.End()/time.Minute) {
		t.Fatalf("%d samples, one a minute, for a trace of %s", n, tr.End())
	}
}

// A period that turns docker+machine's IdleCount to 0 makes its runners accept
// jobs before their machines exist (and taskscaler's non-preemptive): the
// simulated runners follow, and the jobs run.
func TestAcceptanceFollowsPeriods(t *testing.T) {
	cfg := parseConfig(t, `
[[pool]]
name = "docker"
tags = ["docker"]
idle_count = 1
  [[pool.policy]]
  periods = ["* 1-23 * * *"]
  idle_count = 0
`)
	tr := parseTrace(t, "periods", `job_id,pipeline_id,stage,pipeline_created_s,duration_s,tags
1,1,0,7200.0,60.0,docker
2,1,0,7200.0,60.0,docker
`)
	for _, name := range []string{"docker-machine", "taskscaler"} {
		res := runWith(t, name, nil, sim.Options{Trace: tr, Config: cfg, Seed: 1})
		if res.UnfinishedJobs != 0 {
			t.Errorf("%s: %d of %d jobs unfinished after IdleCount 0 came into force", name, res.UnfinishedJobs, res.Jobs)
		}
	}
}

// A job no pool can take waits until the run stops: its wait is that long, it
// counts as having waited a cold start, and only finished jobs' run time is
// job time.
func TestAJobThatNeverStarts(t *testing.T) {
	cfg := parseConfig(t, "[[pool]]\nname = \"docker\"\ntags = [\"docker\"]\n")
	tr := parseTrace(t, "stuck", `job_id,pipeline_id,stage,pipeline_created_s,duration_s,tags
1,1,0,60.0,60.0,docker
2,2,0,60.0,60.0,docker;large
`)
	res := runWith(t, "shoal", nil, sim.Options{Trace: tr, Config: cfg, Seed: 1, KeepJobs: true})
	if res.UnfinishedJobs != 1 || res.JobsWaitedColdStart != 2 || math.Abs(res.JobHours-60.0/3600) > 0.005 {
		t.Fatalf("unfinished %d, waited a cold start %d, job hours %.3f; want 1, 2 and the finished job's minute", res.UnfinishedJobs, res.JobsWaitedColdStart, res.JobHours)
	}
	stuck := res.JobWaits[1]
	if !stuck.BecamePending || stuck.Started || stuck.Finished || stuck.Wait < 5*time.Hour {
		t.Fatalf("the job no pool takes: %+v, want pending, never started, waiting until the run stopped", stuck)
	}
	// Its wait counts: the figures are at least what was measured.
	if res.WaitS.Max < stuck.Wait.Seconds()-0.001 || res.WaitS.Mean < stuck.Wait.Seconds()/2-0.001 {
		t.Errorf("wait figures %+v leave out the job still pending after %s", res.WaitS, stuck.Wait)
	}
	// And shoal's own run, unfinished, is not judged against the others.
	rs := []sim.Result{res, {Policy: "docker-machine", Jobs: 2, WaitS: sim.Stats{P95: 1e6}, CostUSD: 1e6}}
	if got := strings.Join(sim.Findings(rs), "\n"); !strings.Contains(got, "left 1 of 2 jobs unfinished, so it is not compared") || strings.Contains(got, "beats shoal") {
		t.Errorf("findings of an unfinished shoal run:\n%s", got)
	}
}

// The lower bound prices each job on the cheapest job slot of the pools that
// can take it, whichever is listed first or has the fewest tags.
func TestLowerBoundTakesTheCheapestSlot(t *testing.T) {
	tr := parseTrace(t, "docker", `job_id,pipeline_id,stage,pipeline_created_s,duration_s,tags
1,1,0,60.0,3600.0,docker
`)
	tests := []struct {
		name, pools string
		want        float64 // $ for the job's hour
	}{
		{"one slot a Droplet", `[[pool]]
name = "big"
tags = ["docker"]
size = "s-8vcpu-16gb"
[[pool]]
name = "docker"
tags = ["docker"]
`, 0.03571},
		{"eight slots a Droplet", `[[pool]]
name = "docker"
tags = ["docker"]
[[pool]]
name = "wide"
tags = ["docker", "large"]
size = "s-8vcpu-16gb"
capacity_per_instance = 8
`, 0.14286 / 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runWith(t, "static", policy.Params{"instances": 1}, sim.Options{Trace: tr, Config: parseConfig(t, tc.pools), Seed: 1})
			if math.Abs(res.LowerBoundUSD-tc.want) > 1e-4 {
				t.Errorf("lower bound $%.5f, want $%.5f", res.LowerBoundUSD, tc.want)
			}
		})
	}
}

// daySeries is a day of samples a minute from Monday 00:00 with a queue of
// `pending` jobs from 14:00 to 14:20 and a few jobs running from 09:00 on.
func daySeries(pending int) *sim.Series {
	s := &sim.Series{Start: sim.Epoch, Step: time.Minute}
	for m := range 24 * 60 {
		p, r := 0, 0
		if m >= 9*60 {
			r = 3
		}
		if m >= 14*60 && m < 14*60+20 {
			p = pending
		}
		s.Pending, s.Running = append(s.Pending, p), append(s.Running, r)
		s.SlotsBooting, s.SlotsReady = append(s.SlotsBooting, 0), append(s.SlotsReady, r)
		s.CostUSD = append(s.CostUSD, float64(m)/100)
	}
	return s
}

// The report zooms on the hours where jobs waited, labels time as clock time,
// and in a large comparison charts only the runs worth a look while its table
// lists them all.
func TestReportZoomsOnTheBusiestHoursAndChartsTheRunsThatMatter(t *testing.T) {
	r := func(name string, p95, cost float64) sim.Result {
		return sim.Result{Policy: name, Params: policy.Params{"cost": cost}, // a distinct name for each run
			Jobs: 100, WaitS: sim.Stats{P95: p95}, CostUSD: cost, Series: daySeries(int(p95))}
	}
	rs := []sim.Result{r("shoal", 40, 10)}
	for i := range 12 { // each slower and dearer than shoal
		rs = append(rs, r("taskscaler", 50+float64(i), 11+float64(i)))
	}
	rs = append(rs, r("docker-machine", 90, 12), r("docker-machine", 95, 30), r("static", 200, 5))

	var buf bytes.Buffer
	if err := sim.WriteReport(&buf, "test", rs, true); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	if want := "Busiest hours, where jobs waited most: Mon 13:09 to Mon 15:08 UTC"; !strings.Contains(html, want) {
		i := strings.Index(html, "Busiest")
		t.Errorf("report lacks %q: %.80s", want, html[max(i, 0):])
	}
	for _, want := range []string{">14:00<", ">12:00<", "No baseline setting beats shoal", "docker-machine at the nearest equal or higher cost: docker-machine cost=12"} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Charted: shoal, the frontier (static, cheaper and slower) and the
	// docker-machine setting at $12. Tabled: all 16.
	if got := strings.Count(html, "<h2>"); got != 1+3 {
		t.Errorf("%d charts of runs (and cost), want shoal, static and docker-machine cost=12 charted", got-1)
	}
	if got := strings.Count(html, "<tr"); got != 1+len(rs) {
		t.Errorf("%d table rows, want a header and %d runs", got, len(rs))
	}
	if got := strings.Count(html, `class="frontier"`); got != 2 {
		t.Errorf("%d rows marked on the frontier, want shoal and static", got)
	}
}

// Runs end at different times: every chart spans the longest, the zoom may lie
// past the end of a shorter run, and a run's cost stays flat after its end.
func TestReportOfRunsOfDifferentLengths(t *testing.T) {
	short := daySeries(0)
	short.Pending, short.Running = short.Pending[:12*60], short.Running[:12*60]
	short.SlotsBooting, short.SlotsReady, short.CostUSD = short.SlotsBooting[:12*60], short.SlotsReady[:12*60], short.CostUSD[:12*60]
	long := daySeries(0)
	long.Pending[20*60] = 50 // a queue at 20:00, after the short run has ended
	for _, rs := range [][]sim.Result{
		{{Policy: "shoal", Series: long}, {Policy: "static", Series: short}},
		{{Policy: "static", Series: short}, {Policy: "shoal", Series: long}},
	} {
		var buf bytes.Buffer
		if err := sim.WriteReport(&buf, "test", rs, false); err != nil {
			t.Fatal(err)
		}
		html := buf.String()
		if want := "where jobs waited most: Mon 19:00 to Mon 20:59 UTC"; !strings.Contains(html, want) {
			t.Errorf("%s first: report lacks %q", rs[0].Policy, want)
		}
		if want := ">21:00<"; !strings.Contains(html, want) { // the whole day, whichever run is first
			t.Errorf("%s first: the charts do not span the longer run", rs[0].Policy)
		}
	}
	for _, rs := range [][]sim.Result{nil, {{Policy: "shoal", Series: &sim.Series{Pending: []int{1, 2}}}}} {
		if err := sim.WriteReport(io.Discard, "test", rs, true); err == nil {
			t.Errorf("a report of %d runs without usable series: no error", len(rs))
		}
	}
}

// A trace with no jobs (an export of a quiet window) is refused, not crashed on.
func TestRunRefusesAnEmptyTrace(t *testing.T) {
	_, err := sim.Run(context.Background(), sim.Options{Trace: parseTrace(t, "empty", trace.Header+"\n"), Policy: policy.NewShoal()})
	if err == nil || !strings.Contains(err.Error(), "no jobs") {
		t.Fatalf("an empty trace: %v", err)
	}
}

// Check names the tag sets no pool of the config takes.
func TestRunRefusesJobsNoPoolTakes(t *testing.T) {
	tr := parseTrace(t, "mixed", trace.Header+"\n1,1,0,60.0,120.0,\n2,1,0,60.0,90.0,docker\n3,1,1,60.0,30.0,docker;gpu\n")
	cfg := parseConfig(t, "[[pool]]\nname = \"docker\"\ntags = [\"docker\"]\n")
	err := sim.Options{Trace: tr, Config: cfg}.Check()
	if err == nil || !strings.Contains(err.Error(), "no pool takes the jobs tagged (untagged), docker;gpu:") {
		t.Fatalf("a config without pools for two tag sets: %v", err)
	}
}
