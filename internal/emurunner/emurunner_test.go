package emurunner_test

import (
	"context"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/emurunner"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/reconcile"
)

var epoch = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

func TestRunnerFollowsItsDroplet(t *testing.T) {
	for _, acceptor := range []bool{false, true} {
		name := map[bool]string{false: "own polling", true: "behind an acceptor"}[acceptor]
		t.Run(name, func(t *testing.T) {
			vc := clock.NewVirtual(epoch)
			gl := glemu.New(glemu.Options{Clock: vc, Tokens: []string{"t"}})
			pid, err := gl.AddProject("app", 0)
			if err != nil {
				t.Fatal(err)
			}
			pool := emurunner.Pool{Name: "docker", Tags: []string{"docker"}, Capacity: 2}
			if acceptor {
				pool.AcceptLimit = 10
			}
			fleet, err := emurunner.New(gl, vc, 20*time.Second, []emurunner.Pool{pool})
			if err != nil {
				t.Fatal(err)
			}
			d := cloud.Droplet{ID: 7, Name: "shoal-docker-1"}
			tags := []string{reconcile.FleetTag, reconcile.PoolTagPrefix + "docker"}
			fleet.OnDroplet(doemu.DropletEvent{Kind: "created", ID: d.ID, Name: d.Name, Tags: tags, At: vc.Now()})
			if _, err := gl.CreatePipeline(pid, []glemu.StageSpec{{Jobs: []glemu.JobSpec{
				{Duration: time.Minute, Tags: []string{"docker"}}, {Duration: time.Minute, Tags: []string{"docker"}}}}}); err != nil {
				t.Fatal(err)
			}
			vc.Advance(time.Minute)
			obs, _ := fleet.Observe(context.Background(), demand.Snapshot{}, []cloud.Droplet{d})
			if _, up := obs.Droplets[d.ID]; up {
				t.Fatal("a runner registered before its Droplet was active")
			}
			if acceptor && len(obs.Waiting["docker"]) != 2 {
				t.Fatalf("the acceptor holds %d jobs, want 2", len(obs.Waiting["docker"]))
			}
			if b, r := fleet.Slots(); b != 2 || r != 0 {
				t.Fatalf("slots booting %d ready %d, want 2 and 0", b, r)
			}
			if bt := fleet.BootTime(); bt != time.Minute {
				t.Fatalf("boot time so far %s, want 1m0s", bt)
			}

			fleet.OnDroplet(doemu.DropletEvent{Kind: "active", ID: d.ID, Name: d.Name, Tags: tags, At: vc.Now()})
			vc.Advance(20*time.Second + glemu.DefaultCheckInterval)
			obs, _ = fleet.Observe(context.Background(), demand.Snapshot{}, []cloud.Droplet{d})
			st := obs.Droplets[d.ID]
			if !st.Registered || st.Running != 2 || len(obs.Waiting["docker"]) != 0 {
				t.Fatalf("20 s after boot: %+v, waiting %d; want registered and running both jobs", st, len(obs.Waiting["docker"]))
			}
			if bt := fleet.BootTime(); bt != 80*time.Second {
				t.Fatalf("boot time %s, want 1m20s: active after 1 min, registered 20 s later", bt)
			}
			running, err := fleet.Drain(context.Background(), d)
			if err != nil || running != 2 {
				t.Fatalf("drain: %d running, %v", running, err)
			}
			vc.Advance(2 * time.Minute)
			obs, _ = fleet.Observe(context.Background(), demand.Snapshot{}, []cloud.Droplet{d})
			if st := obs.Droplets[d.ID]; !st.Draining || st.Running != 0 || st.JobsDone != 2 {
				t.Fatalf("after the drain: %+v", st)
			}
			fleet.OnDroplet(doemu.DropletEvent{Kind: "deleted", ID: d.ID, Name: d.Name, Tags: tags, At: vc.Now()})
			for _, m := range gl.Managers() {
				if m.SystemID == d.Name {
					t.Fatal("the runner of a deleted Droplet is still registered")
				}
			}
			// A Droplet deleted while it boots counts until its delete.
			early := cloud.Droplet{ID: 8, Name: "shoal-docker-2"}
			fleet.OnDroplet(doemu.DropletEvent{Kind: "created", ID: early.ID, Name: early.Name, Tags: tags, At: vc.Now()})
			vc.Advance(30 * time.Second)
			fleet.OnDroplet(doemu.DropletEvent{Kind: "deleted", ID: early.ID, Name: early.Name, Tags: tags, At: vc.Now()})
			vc.Advance(time.Minute)
			if bt := fleet.BootTime(); bt != 110*time.Second {
				t.Fatalf("boot time %s, want 1m50s (80 s + 30 s)", bt)
			}
		})
	}
}
