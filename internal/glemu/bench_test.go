package glemu_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/trace"
)

// replayWeek replays team-week.csv through the emulator with a fixed fleet:
// ten 4-slot docker managers and two 2-slot docker;large managers.
func replayWeek(b testing.TB, tr *trace.Trace, withHook bool) []glemu.JobInfo {
	s, clk := newEmu(b)
	hooks := 0
	if withHook {
		check(b, s.AddJobHook(glemu.HookConfig{Secret: "x", Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hooks++ })}))
	}
	pid := must[int64](b)(s.AddProject("app", 0))
	docker := must[glemu.Runner](b)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	large := must[glemu.Runner](b)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker", "large"}}))
	for i := range 10 {
		check(b, s.RegisterManager(docker.Token, fmt.Sprintf("s_docker%02d", i), glemu.ManagerOptions{Capacity: 4}))
	}
	for i := range 2 {
		check(b, s.RegisterManager(large.Token, fmt.Sprintf("s_large%02d", i), glemu.ManagerOptions{Capacity: 2}))
	}
	replay(b, s, clk, pid, tr)
	if withHook && hooks != 4*tr.Jobs() {
		b.Fatalf("%d hooks, want 4 per job (created, pending, running, success)", hooks)
	}
	return s.Jobs()
}

// replay creates the trace's pipelines at their times and runs until every job is done.
func replay(tb testing.TB, s *glemu.Server, clk *clock.Virtual, pid int64, tr *trace.Trace) {
	for _, p := range tr.Pipelines {
		clk.AdvanceTo(start.Add(p.CreatedAt))
		must[glemu.PipelineRef](tb)(s.CreatePipeline(pid, glemu.PipelineStages(p)))
	}
	runUntilIdle(tb, clk)
}

func benchmarkWeek(b *testing.B, withHook bool) {
	tr, err := trace.ParseFile("../trace/testdata/team-week.csv")
	if err != nil {
		b.Fatal(err)
	}
	var js []glemu.JobInfo
	for b.Loop() {
		js = replayWeek(b, tr, withHook)
	}
	waits := make([]time.Duration, 0, len(js))
	for _, j := range js {
		if j.Status != glemu.StatusSuccess {
			b.Fatalf("job %d ended %s", j.ID, j.Status)
		}
		waits = append(waits, j.Wait())
	}
	slices.Sort(waits)
	b.ReportMetric(float64(len(js)), "jobs")
	b.ReportMetric(waits[len(waits)*95/100].Seconds(), "p95_wait_s")
	b.ReportMetric(waits[len(waits)-1].Seconds(), "max_wait_s")
}

func BenchmarkTeamWeekFixedFleet(b *testing.B)         { benchmarkWeek(b, false) }
func BenchmarkTeamWeekFixedFleetWithHook(b *testing.B) { benchmarkWeek(b, true) }

// BenchmarkNightlyManyManagers replays nightly.csv, whose 02:00 pipeline
// queues ~200 jobs at once, on 300 one-slot managers: the cost of choosing
// who polls when the fleet is large.
func BenchmarkNightlyManyManagers(b *testing.B) {
	tr, err := trace.ParseFile("../trace/testdata/nightly.csv")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, clk := newEmu(b)
		pid := must[int64](b)(s.AddProject("app", 0))
		r := must[glemu.Runner](b)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker", "large"}}))
		for i := range 300 {
			check(b, s.RegisterManager(r.Token, fmt.Sprintf("s_%03d", i), glemu.ManagerOptions{Capacity: 1}))
		}
		replay(b, s, clk, pid, tr)
		if c := s.Counts(); c.Success != tr.Jobs() {
			b.Fatalf("counts = %+v", c)
		}
	}
}
