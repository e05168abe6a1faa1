package glemu_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/trace"
)

// A week of team-week.csv on a fixed fleet: every job runs once, for its
// duration, on a runner whose tags cover it, each stage after the previous one.
func TestReplayTeamWeek(t *testing.T) {
	tr, err := trace.ParseFile("../trace/testdata/team-week.csv")
	if err != nil {
		t.Fatal(err)
	}
	js := replayWeek(t, tr, false)
	if len(js) != tr.Jobs() {
		t.Fatalf("%d jobs in the emulator, %d in the trace", len(js), tr.Jobs())
	}
	byID := map[int64]glemu.JobInfo{}
	for _, j := range js {
		byID[j.ID] = j
		if j.Status != glemu.StatusSuccess || j.FinishedAt.Sub(j.ExecStartedAt) != j.Duration || j.Wait() < 0 {
			t.Fatalf("job %+v", j)
		}
		if len(j.Tags) == 2 && !strings.HasPrefix(j.SystemID, "s_large") {
			t.Fatalf("docker;large job %d ran on %s", j.ID, j.SystemID)
		}
	}
	// Emulator job IDs follow the trace's order, one pipeline after the other.
	id := int64(0)
	for _, p := range tr.Pipelines {
		var prevEnd time.Time
		var end time.Time
		for k, st := range p.Stages {
			stageEnd := time.Time{}
			for i, tj := range st {
				id++
				j := byID[id]
				if j.Name != fmt.Sprint("job-", tj.ID) || j.Duration != tj.Duration || j.Stage != k {
					t.Fatalf("pipeline %d stage %d job %d = %+v, want trace job %d", p.ID, k, i, j, tj.ID)
				}
				if k == 0 && !j.QueuedAt.Equal(start.Add(p.CreatedAt)) {
					t.Fatalf("job %d queued at %v, want pipeline creation %v", j.ID, j.QueuedAt, start.Add(p.CreatedAt))
				}
				if k > 0 && !j.QueuedAt.Equal(prevEnd) {
					t.Fatalf("job %d queued at %v, want end of stage %d at %v", j.ID, j.QueuedAt, k-1, prevEnd)
				}
				if j.FinishedAt.After(stageEnd) {
					stageEnd = j.FinishedAt
				}
			}
			prevEnd, end = stageEnd, stageEnd
		}
		if makespan := end.Sub(start.Add(p.CreatedAt)); makespan < p.ZeroWaitMakespan() {
			t.Fatalf("pipeline %d took %v, less than its zero-wait makespan %v", p.ID, makespan, p.ZeroWaitMakespan())
		}
	}
}

// With the real clock (shoal emulate), timers fire on their own goroutines.
func TestRealClock(t *testing.T) {
	s := glemu.New(glemu.Options{Clock: clock.Real{}, Tokens: []string{"t"}})
	defer s.Close()
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	for _, id := range []string{"s_1", "s_2"} {
		check(t, s.RegisterManager(r.Token, id, glemu.ManagerOptions{Capacity: 2, CheckInterval: 5 * time.Millisecond}))
	}
	for range 5 {
		must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{
			{Jobs: jobs(3, 10*time.Millisecond, "docker")},
			{Jobs: jobs(1, 5*time.Millisecond, "docker")},
		}))
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.Counts().Success != 20 {
		if time.Now().After(deadline) {
			t.Fatalf("counts = %+v after 20 s, want 20 successes", s.Counts())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
