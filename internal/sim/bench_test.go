package sim_test

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/sim"
	"github.com/shoalci/shoal/internal/trace"
)

// busyWeek is team-week with every pipeline four times, each copy a few
// minutes apart: a 7-day trace of about 27,000 jobs.
func busyWeek(b *testing.B) *trace.Trace {
	b.Helper()
	t, err := trace.ParseFile("../trace/testdata/team-week.csv")
	if err != nil {
		b.Fatal(err)
	}
	out := &trace.Trace{Name: "team-week-x4"}
	id := int64(0)
	for copyN := range 4 {
		for _, p := range t.Pipelines {
			q := trace.Pipeline{ID: p.ID*4 + int64(copyN), CreatedAt: p.CreatedAt + time.Duration(copyN)*97*time.Second}
			for _, st := range p.Stages {
				var jobs []trace.Job
				for _, j := range st {
					id++
					jobs = append(jobs, trace.Job{ID: id, Duration: j.Duration, Tags: j.Tags})
				}
				q.Stages = append(q.Stages, jobs)
			}
			out.Pipelines = append(out.Pipelines, q)
		}
	}
	return out
}

// BenchmarkWeek25k: a 7-day trace of about 27,000 jobs through shoal's policy;
// the target is under 20 s.
func BenchmarkWeek25k(b *testing.B) {
	tr := busyWeek(b)
	pol, err := policy.ByName("shoal", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(400)) // as shoal sim runs
	for b.Loop() {
		res, err := sim.Run(context.Background(), sim.Options{Trace: tr, Policy: pol, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.Jobs), "jobs")
		b.ReportMetric(res.WaitS.P95, "p95-wait-s")
		b.ReportMetric(float64(res.RateLimitedResponses), "429s")
		if res.UnfinishedJobs > 0 {
			b.Fatalf("%d jobs unfinished", res.UnfinishedJobs)
		}
	}
}
