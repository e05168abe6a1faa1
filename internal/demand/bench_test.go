package demand_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/glemu"
)

// BenchmarkSnapshotInProcess measures one autoscaler poll as the simulator
// makes it: client-go over glemu's in-process transport, with 50 managers
// running 100 jobs and 60 jobs pending (busy), or 10 idle managers and no
// jobs (quiet, most of a week).
func BenchmarkSnapshotInProcess(b *testing.B) {
	b.Run("busy", func(b *testing.B) { benchmarkSnapshot(b, 50, 160) })
	b.Run("quiet", func(b *testing.B) { benchmarkSnapshot(b, 10, 0) })
}

func benchmarkSnapshot(b *testing.B, managers, jobs int) {
	clk := clock.NewVirtual(start)
	gl := glemu.New(glemu.Options{Clock: clk, Tokens: []string{token}})
	pid, _ := gl.AddProject("app", 0)
	r, _ := gl.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}})
	for i := range managers {
		if err := gl.RegisterManager(r.Token, fmt.Sprintf("s_%03d", i), glemu.ManagerOptions{Capacity: 2}); err != nil {
			b.Fatal(err)
		}
	}
	if jobs > 0 {
		specs := make([]glemu.JobSpec, jobs)
		for i := range specs {
			specs[i] = glemu.JobSpec{Duration: time.Hour, Tags: []string{"docker"}}
		}
		if _, err := gl.CreatePipeline(pid, []glemu.StageSpec{{Jobs: specs}}); err != nil {
			b.Fatal(err)
		}
	}
	clk.Advance(5 * time.Second)
	c, _ := gitlab.NewClient(token, gitlab.WithBaseURL("http://glemu.invalid"),
		gitlab.WithHTTPClient(&http.Client{Transport: gl.Transport()}), gitlab.WithoutRetries())
	src, _ := demand.NewSource(c, demand.Config{Projects: []string{"1"}, RunnerIDs: []int64{r.ID}}, clk)
	for b.Loop() {
		snap, err := src.Snapshot(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Pending) != max(0, jobs-2*managers) || len(snap.Managers) != managers {
			b.Fatalf("snapshot: %d pending, %d managers", len(snap.Pending), len(snap.Managers))
		}
	}
}
