package glemu_test

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/glemu"
)

var start = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) // a Monday

func newEmu(t testing.TB) (*glemu.Server, *clock.Virtual) {
	t.Helper()
	clk := clock.NewVirtual(start)
	s := glemu.New(glemu.Options{Clock: clk, Tokens: []string{"glpat-test"}})
	t.Cleanup(s.Close)
	return s, clk
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func jobs(n int, d time.Duration, tags ...string) []glemu.JobSpec {
	out := make([]glemu.JobSpec, n)
	for i := range out {
		out[i] = glemu.JobSpec{Duration: d, Tags: tags}
	}
	return out
}

// runUntilIdle advances the clock until no timer is left: every job that can
// run has finished.
func runUntilIdle(t testing.TB, clk *clock.Virtual) {
	t.Helper()
	for i := 0; ; i++ {
		next, ok := clk.Next()
		if !ok {
			return
		}
		if i > 1_000_000 {
			t.Fatal("clock still has timers after a million steps")
		}
		clk.AdvanceTo(next)
	}
}

func job(t testing.TB, s *glemu.Server, id int64) glemu.JobInfo {
	t.Helper()
	j, ok := s.Job(id)
	if !ok {
		t.Fatalf("job %d not found", id)
	}
	return j
}

func TestStagesRunInOrderOnOneManager(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Description: "docker", Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_a", glemu.ManagerOptions{Capacity: 1}))

	ref := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{
		{Name: "test", Jobs: jobs(2, 100*time.Second, "docker")},
		{Name: "build", Jobs: jobs(1, 50*time.Second, "docker")},
	}))
	if c := s.Counts(); c.Pending != 2 || c.Created != 1 {
		t.Fatalf("counts after create = %+v, want 2 pending and 1 created", c)
	}
	runUntilIdle(t, clk)

	a, b, c := job(t, s, ref.JobIDs[0][0]), job(t, s, ref.JobIDs[0][1]), job(t, s, ref.JobIDs[1][0])
	for _, j := range []glemu.JobInfo{a, b, c} {
		if j.Status != glemu.StatusSuccess || j.SystemID != "s_a" || j.RunnerID != r.ID {
			t.Fatalf("job %d = %+v, want success on s_a", j.ID, j)
		}
		if got := j.FinishedAt.Sub(j.ExecStartedAt); got != j.Duration {
			t.Errorf("job %d ran %v, want its duration %v", j.ID, got, j.Duration)
		}
	}
	// One slot: the older job first, the next one at a later tick, stage 1 only after stage 0.
	if !a.StartedAt.Before(b.StartedAt) || b.StartedAt.Before(a.FinishedAt) {
		t.Errorf("stage 0 jobs overlap on a 1-slot manager: %v–%v and %v–%v", a.StartedAt, a.FinishedAt, b.StartedAt, b.FinishedAt)
	}
	if !c.QueuedAt.Equal(b.FinishedAt) {
		t.Errorf("stage 1 queued at %v, want when stage 0 finished (%v)", c.QueuedAt, b.FinishedAt)
	}
	for _, j := range []glemu.JobInfo{a, b, c} {
		if w := j.StartedAt.Sub(j.QueuedAt); w > glemu.DefaultCheckInterval && j.ID == a.ID || w < 0 {
			t.Errorf("job %d waited %v", j.ID, w)
		}
		// Every pick-up happens on one of the manager's ticks, 3 s apart.
		if d := j.StartedAt.Sub(a.StartedAt); d%glemu.DefaultCheckInterval != 0 {
			t.Errorf("job %d started %v after job %d: not on the manager's 3 s ticks", j.ID, d, a.ID)
		}
	}
	if c := s.Counts(); c.Success != 3 || c.Pending+c.Running+c.Created != 0 {
		t.Errorf("final counts = %+v", c)
	}
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers armed with nothing pending: idle managers must not poll on the clock", n)
	}
}

func TestTagsAndFIFO(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	docker := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))

	// Queue: a large job first, then two docker jobs a second apart.
	large := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, 10*time.Second, "large", "docker")}}))
	clk.Advance(time.Second)
	first := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, 10*time.Second, "docker")}}))
	clk.Advance(time.Second)
	second := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, 10*time.Second, "docker")}}))

	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers armed with no runner manager", n)
	}
	check(t, s.RegisterManager(docker.Token, "s_docker", glemu.ManagerOptions{Capacity: 1}))
	clk.Advance(glemu.DefaultCheckInterval)
	if j := job(t, s, first.JobIDs[0][0]); j.Status != glemu.StatusRunning {
		t.Fatalf("oldest docker job is %s, want running", j.Status)
	}
	if j := job(t, s, second.JobIDs[0][0]); j.Status != glemu.StatusPending {
		t.Fatalf("younger docker job is %s, want pending (one slot)", j.Status)
	}
	runUntilIdle(t, clk)
	if j := job(t, s, large.JobIDs[0][0]); j.Status != glemu.StatusPending {
		t.Fatalf("docker;large job is %s on a docker-only runner, want pending", j.Status)
	}

	// A docker;large runner may take it (and docker jobs too).
	big := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker", "large"}}))
	check(t, s.RegisterManager(big.Token, "s_big", glemu.ManagerOptions{Capacity: 2}))
	runUntilIdle(t, clk)
	if j := job(t, s, large.JobIDs[0][0]); j.Status != glemu.StatusSuccess || j.SystemID != "s_big" {
		t.Fatalf("docker;large job = %s on %q, want success on s_big", j.Status, j.SystemID)
	}

	// Untagged jobs go only to runners that run untagged jobs.
	untagged := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, time.Second)}}))
	runUntilIdle(t, clk)
	if j := job(t, s, untagged.JobIDs[0][0]); j.Status != glemu.StatusPending {
		t.Fatalf("untagged job = %s, want pending: no runner runs untagged jobs", j.Status)
	}
	any := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}, RunUntagged: true}))
	check(t, s.RegisterManager(any.Token, "s_any", glemu.ManagerOptions{}))
	runUntilIdle(t, clk)
	if j := job(t, s, untagged.JobIDs[0][0]); j.Status != glemu.StatusSuccess {
		t.Fatalf("untagged job = %s, want success on a run_untagged runner", j.Status)
	}
}

func TestCapacityFillsInOneTick(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_4", glemu.ManagerOptions{Capacity: 4}))
	ref := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(6, time.Minute, "docker")}}))
	clk.Advance(glemu.DefaultCheckInterval)
	var started []time.Time
	for _, id := range ref.JobIDs[0] {
		if j := job(t, s, id); j.Status == glemu.StatusRunning {
			started = append(started, j.StartedAt)
		}
	}
	if len(started) != 4 || slices.ContainsFunc(started, func(x time.Time) bool { return !x.Equal(started[0]) }) {
		t.Fatalf("after one tick: %d running, started %v; want 4 started together", len(started), started)
	}
	if c := s.Counts(); c.Running != 4 || c.Pending != 2 {
		t.Fatalf("counts = %+v, want 4 running, 2 pending", c)
	}
	if m := s.Managers(); len(m) != 1 || m[0].Running != 4 || m[0].Capacity != 4 {
		t.Fatalf("Managers() = %+v", m)
	}
}

func TestPauseDrains(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_1", glemu.ManagerOptions{Capacity: 1}))
	ref := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(2, time.Minute, "docker")}}))
	clk.Advance(glemu.DefaultCheckInterval)
	check(t, s.Pause(r.Token, "s_1"))
	runUntilIdle(t, clk)
	if j := job(t, s, ref.JobIDs[0][0]); j.Status != glemu.StatusSuccess {
		t.Errorf("running job on a paused manager = %s, want success", j.Status)
	}
	if j := job(t, s, ref.JobIDs[0][1]); j.Status != glemu.StatusPending {
		t.Errorf("second job = %s, want pending: a paused manager takes no job", j.Status)
	}
	check(t, s.Resume(r.Token, "s_1"))
	runUntilIdle(t, clk)
	if j := job(t, s, ref.JobIDs[0][1]); j.Status != glemu.StatusSuccess {
		t.Errorf("second job after resume = %s, want success", j.Status)
	}
	if err := s.Pause(r.Token, "s_unknown"); err == nil {
		t.Error("Pause of an unknown manager succeeded")
	}
	if err := s.Pause("glrt-wrong", "s_1"); err == nil {
		t.Error("Pause with a wrong token succeeded")
	}
}

func TestUnregisterFailsRunningJobs(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_1", glemu.ManagerOptions{Capacity: 1}))
	ref := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{
		{Jobs: jobs(1, time.Minute, "docker")},
		{Jobs: jobs(2, time.Minute, "docker")},
	}))
	clk.Advance(glemu.DefaultCheckInterval)
	check(t, s.Unregister(r.Token, "s_1"))
	j := job(t, s, ref.JobIDs[0][0])
	if j.Status != glemu.StatusFailed || j.FailureReason != "runner_system_failure" {
		t.Fatalf("job on an unregistered manager = %s (%s), want failed (runner_system_failure)", j.Status, j.FailureReason)
	}
	for _, id := range ref.JobIDs[1] {
		if j := job(t, s, id); j.Status != glemu.StatusSkipped {
			t.Errorf("later-stage job %d = %s, want skipped", id, j.Status)
		}
	}
	if len(s.Managers()) != 0 {
		t.Error("manager still listed after Unregister")
	}
	runUntilIdle(t, clk) // the failed job's finish timer must not resurrect it
	if c := s.Counts(); c.Failed != 1 || c.Skipped != 2 || c.Running != 0 || c.Success != 0 {
		t.Errorf("counts = %+v", c)
	}
	if err := s.RegisterManager(r.Token, "s_1", glemu.ManagerOptions{}); err != nil {
		t.Errorf("re-registering the same system_id after Unregister: %v", err)
	}
	if err := s.RegisterManager(r.Token, "s_1", glemu.ManagerOptions{}); err == nil {
		t.Error("registering a system_id twice succeeded")
	}
}

func TestAcceptanceModeWaitsForBoot(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	ref := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(3, 30*time.Second, "docker")}}))
	check(t, s.RegisterManager(r.Token, "s_boot", glemu.ManagerOptions{Capacity: 2, Booting: true}))
	clk.Advance(glemu.DefaultCheckInterval)
	accepted := 0
	for _, id := range ref.JobIDs[0] {
		j := job(t, s, id)
		if j.Status == glemu.StatusRunning {
			accepted++
			if !j.ExecStartedAt.IsZero() || j.Wait() != 0 {
				t.Errorf("job %d started its script on a booting machine", id)
			}
		}
	}
	if accepted != 2 {
		t.Fatalf("booting manager accepted %d jobs, want its capacity 2", accepted)
	}
	clk.Advance(10 * time.Minute) // nothing runs while the machine boots
	if c := s.Counts(); c.Running != 2 || c.Success != 0 {
		t.Fatalf("during boot counts = %+v, want 2 running, none finished", c)
	}
	readyAt := clk.Now()
	check(t, s.SetReady(r.Token, "s_boot"))
	runUntilIdle(t, clk)
	j := job(t, s, ref.JobIDs[0][0])
	if !j.ExecStartedAt.Equal(readyAt) || !j.FinishedAt.Equal(readyAt.Add(30*time.Second)) {
		t.Errorf("job ran %v–%v, want from ready (%v) for 30 s", j.ExecStartedAt, j.FinishedAt, readyAt)
	}
	if w := j.Wait(); w < 10*time.Minute {
		t.Errorf("Wait = %v, want the boot time included", w)
	}
	if c := s.Counts(); c.Success != 3 {
		t.Errorf("counts = %+v, want all 3 done", c)
	}
}

// A replay of the same calls gives the same assignments and times.
func TestDeterministic(t *testing.T) {
	run := func() []glemu.JobInfo {
		s, clk := newEmu(t)
		pid := must[int64](t)(s.AddProject("app", 0))
		r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
		for _, id := range []string{"s_a", "s_b", "s_c"} {
			check(t, s.RegisterManager(r.Token, id, glemu.ManagerOptions{Capacity: 2}))
		}
		for i := range 20 {
			must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{
				{Jobs: jobs(1+i%4, time.Duration(10+i*7)*time.Second, "docker")},
				{Jobs: jobs(1, 20*time.Second, "docker")},
			}))
			clk.Advance(time.Duration(1+i%5) * time.Second)
		}
		runUntilIdle(t, clk)
		return s.Jobs()
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two identical runs gave different jobs")
	}
	used := map[string]bool{}
	for _, j := range a {
		used[j.SystemID] = true
	}
	if len(used) < 2 {
		t.Errorf("all jobs went to %v: the fleet was not shared", used)
	}
}

func TestObserverSeesEveryTransition(t *testing.T) {
	s, clk := newEmu(t)
	var got []string
	s.Observe(func(ev glemu.Event) {
		got = append(got, ev.Job.Status)
		if !ev.Time.Equal(clk.Now()) {
			t.Errorf("event at %v delivered at %v", ev.Time, clk.Now())
		}
		_ = s.Counts() // observers may call back into the server
	})
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_1", glemu.ManagerOptions{}))
	must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, time.Second, "docker")}}))
	runUntilIdle(t, clk)
	want := []string{"created", "pending", "running", "success"}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestCreateErrors(t *testing.T) {
	s, _ := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	if _, err := s.AddProject("app", 0); err == nil {
		t.Error("duplicate project accepted")
	}
	if _, err := s.AddProject("bad name", 0); err == nil {
		t.Error("project name with a space accepted")
	}
	if _, err := s.AddProject("x", 99); err == nil {
		t.Error("project in a missing group accepted")
	}
	for name, stages := range map[string][]glemu.StageSpec{
		"no stages":     nil,
		"empty stage":   {{Name: "test"}},
		"zero duration": {{Jobs: []glemu.JobSpec{{Tags: []string{"docker"}}}}},
		"empty tag":     {{Jobs: []glemu.JobSpec{{Duration: time.Second, Tags: []string{""}}}}},
	} {
		if _, err := s.CreatePipeline(pid, stages); err == nil {
			t.Errorf("%s: pipeline accepted", name)
		}
	}
	if _, err := s.CreatePipeline(99, []glemu.StageSpec{{Jobs: jobs(1, time.Second)}}); err == nil {
		t.Error("pipeline in a missing project accepted")
	}
	if err := s.RegisterManager("glrt-nope", "s_1", glemu.ManagerOptions{}); err == nil {
		t.Error("manager with an unknown token accepted")
	}
}

// The Go API is safe from many goroutines while the clock runs: no job is lost
// or counted twice.
func TestConcurrentGoAPI(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	var seen atomic.Int64
	s.Observe(func(glemu.Event) { seen.Add(1) })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			sys := fmt.Sprintf("s_%d", g)
			for i := range 50 {
				if _, err := s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(2, time.Duration(1+i%7)*time.Second, "docker")}}); err != nil {
					t.Error(err)
					return
				}
				switch i % 10 {
				case 0:
					if err := s.RegisterManager(r.Token, sys, glemu.ManagerOptions{Capacity: 2}); err != nil {
						t.Error(err)
					}
				case 3:
					_ = s.Pause(r.Token, sys)
				case 5:
					_ = s.Resume(r.Token, sys)
				case 8:
					_ = s.Unregister(r.Token, sys)
				}
				_ = s.Counts()
			}
		})
	}
	wg.Go(func() {
		for range 2000 {
			clk.Advance(time.Second)
		}
	})
	wg.Wait()
	check(t, s.RegisterManager(r.Token, "s_final", glemu.ManagerOptions{Capacity: 8}))
	runUntilIdle(t, clk)
	c := s.Counts()
	if total := c.Created + c.Pending + c.Running + c.Success + c.Failed + c.Skipped; total != 400 {
		t.Errorf("counts %+v add up to %d jobs, want 400", c, total)
	}
	if c.Pending+c.Running+c.Created != 0 || c.Success+c.Failed != 400 {
		t.Errorf("counts = %+v, want every job finished", c)
	}
	// created, pending and running then success or failed: 4 events a job.
	if got := seen.Load(); got != 4*400 {
		t.Errorf("%d events, want %d", got, 4*400)
	}
}

// An acceptor's capacity is its runner's limit (docker+machine's limit): the
// jobs handed over to machines still count against it until they finish.
func TestAcceptorLimitCountsJobsOnMachines(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(5, time.Minute, "docker")}}))
	check(t, s.RegisterManager(r.Token, "acceptor", glemu.ManagerOptions{Capacity: 2, Booting: true}))
	check(t, s.RegisterManager(r.Token, "machine", glemu.ManagerOptions{Capacity: 4}))
	check(t, s.Pause(r.Token, "machine"))
	clk.Advance(glemu.DefaultCheckInterval)
	if n, _ := s.Handover(r.Token, "acceptor", "machine"); n != 2 {
		t.Fatalf("handover moved %d, want the 2 accepted", n)
	}
	clk.Advance(30 * time.Second) // the acceptor polls ten times meanwhile
	if c := s.Counts(); c.Running != 2 || c.Pending != 3 {
		t.Fatalf("counts = %+v: with 2 jobs on the machine the limit of 2 is reached, want 2 running and 3 pending", c)
	}
	clk.Advance(30*time.Second + glemu.DefaultCheckInterval) // the two finish: room for two more
	if c := s.Counts(); c.Running != 2 || c.Pending != 1 || c.Success != 2 {
		t.Fatalf("counts = %+v, want 2 done, 2 accepted, 1 pending", c)
	}
}

// Resume undoes Pause, not Drain: a drained manager takes no job again.
func TestResumeDoesNotUndoDrain(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "m", glemu.ManagerOptions{Capacity: 1}))
	check(t, s.Drain(r.Token, "m"))
	check(t, s.Resume(r.Token, "m"))
	must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, time.Minute, "docker")}}))
	clk.Advance(time.Minute)
	if c := s.Counts(); c.Pending != 1 {
		t.Fatalf("counts = %+v: a drained manager took a job after Resume", c)
	}
}

func TestHandoverRunsAcceptedJobsOnAReadyMachine(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	ref := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(3, time.Minute, "docker")}}))
	check(t, s.RegisterManager(r.Token, "acceptor", glemu.ManagerOptions{Capacity: 10, Booting: true}))
	clk.Advance(glemu.DefaultCheckInterval) // the acceptor takes all three
	check(t, s.RegisterManager(r.Token, "machine", glemu.ManagerOptions{Capacity: 2}))
	check(t, s.Pause(r.Token, "machine")) // it asks GitLab for nothing itself
	clk.Advance(time.Minute)
	handedAt := clk.Now()
	moved, err := s.Handover(r.Token, "acceptor", "machine")
	if err != nil || moved != 2 {
		t.Fatalf("handover moved %d, %v; want the machine's 2 slots", moved, err)
	}
	first := job(t, s, ref.JobIDs[0][0])
	if first.SystemID != "machine" || !first.ExecStartedAt.Equal(handedAt) {
		t.Fatalf("handed-over job on %q started %v, want on machine at %v", first.SystemID, first.ExecStartedAt, handedAt)
	}
	if n, _ := s.Handover(r.Token, "acceptor", "machine"); n != 0 {
		t.Fatalf("a full machine took %d more", n)
	}
	clk.Advance(time.Minute) // the two finish; the third is still held
	if n, _ := s.Handover(r.Token, "acceptor", "machine"); n != 1 {
		t.Fatalf("after its jobs finished the machine took %d, want 1", n)
	}
	runUntilIdle(t, clk)
	if c := s.Counts(); c.Success != 3 {
		t.Fatalf("counts = %+v, want all 3 done", c)
	}
	if _, err := s.Handover(r.Token, "acceptor", "nobody"); err == nil {
		t.Fatal("handover to an unknown manager succeeded")
	}
	// A drained manager is handed nothing: its machine is going away.
	must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, time.Minute, "docker")}}))
	clk.Advance(glemu.DefaultCheckInterval) // the acceptor takes it
	check(t, s.Drain(r.Token, "machine"))
	check(t, s.Resume(r.Token, "machine"))
	if n, _ := s.Handover(r.Token, "acceptor", "machine"); n != 0 {
		t.Fatalf("a drained manager was handed %d jobs", n)
	}
}
