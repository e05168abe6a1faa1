// Package emurunner plays the runner side of emulated runner Droplets: when the
// DigitalOcean emulator creates and boots a runner Droplet, a runner manager for
// it registers in the GitLab emulator (system_id = the Droplet's name) after a
// registration delay, and stops when the Droplet is deleted. It implements
// reconcile.Runners with the GitLab emulator's drain switch, as the daemon does
// with SSH. The simulator and the reconciler's tests use it.
package emurunner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/reconcile"
)

// Pool is how one pool's runners behave.
type Pool struct {
	Name string
	Tags []string
	// Capacity is how many jobs one Droplet's runner runs at once.
	Capacity int
	// AcceptWhileBooting registers the manager as soon as the Droplet is
	// created and lets it take jobs that wait for the boot (docker+machine
	// with IdleCount = 0).
	AcceptWhileBooting bool
}

// Fleet tracks the emulated runners. Wire its OnDroplet into doemu.Options.
type Fleet struct {
	gl            *glemu.Server
	clock         clock.Clock
	registerDelay time.Duration

	mu      sync.Mutex
	pools   map[string]*pool
	runners map[string]*runnerState // by Droplet name
}

type pool struct {
	Pool
	token    string
	runnerID int64
}

type runnerState struct {
	pool         *pool
	registered   bool // the manager exists in GitLab
	ready        bool // the runner can run jobs
	readyAt      time.Time
	draining     bool
	deleted      bool
	jobsDone     int
	lastFinished time.Time
}

// New creates one GitLab runner per pool in gl (all of a pool's Droplets share
// its token, as gitlab-runner managers do) and returns the fleet.
func New(gl *glemu.Server, clk clock.Clock, registerDelay time.Duration, pools []Pool) (*Fleet, error) {
	f := &Fleet{gl: gl, clock: clk, registerDelay: registerDelay, pools: map[string]*pool{}, runners: map[string]*runnerState{}}
	for _, p := range pools {
		r, err := gl.CreateRunner(glemu.RunnerSpec{Description: "shoal-" + p.Name, Tags: p.Tags})
		if err != nil {
			return nil, fmt.Errorf("create runner for pool %s: %w", p.Name, err)
		}
		if p.Capacity < 1 {
			p.Capacity = 1
		}
		f.pools[p.Name] = &pool{Pool: p, token: r.Token, runnerID: r.ID}
	}
	gl.Observe(f.onJob)
	return f, nil
}

// RunnerIDs are the GitLab runners of the pools, for demand.Config.
func (f *Fleet) RunnerIDs() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []int64
	for _, p := range f.pools {
		ids = append(ids, p.runnerID)
	}
	slices.Sort(ids)
	return ids
}

func (f *Fleet) onJob(ev glemu.Event) {
	if ev.Job.Status != glemu.StatusSuccess && ev.Job.Status != glemu.StatusFailed {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if rs := f.runners[ev.Job.SystemID]; rs != nil {
		rs.jobsDone++
		rs.lastFinished = ev.Time
	}
}

func poolOf(tags []string) string {
	for _, t := range tags {
		if p, ok := strings.CutPrefix(t, reconcile.PoolTagPrefix); ok {
			return p
		}
	}
	return ""
}

// OnDroplet follows the Droplet's life: a runner boots with it and goes with it.
func (f *Fleet) OnDroplet(ev doemu.DropletEvent) {
	f.mu.Lock()
	p := f.pools[poolOf(ev.Tags)]
	if p == nil {
		f.mu.Unlock()
		return // not a runner Droplet
	}
	rs := f.runners[ev.Name]
	if rs == nil {
		rs = &runnerState{pool: p}
		f.runners[ev.Name] = rs
	}
	f.mu.Unlock()

	switch ev.Kind {
	case "created":
		if p.AcceptWhileBooting {
			f.register(ev.Name, rs, true)
		}
	case "active":
		f.clock.AfterFunc(f.registerDelay, func() {
			if rs.pool.AcceptWhileBooting {
				f.setReady(ev.Name, rs)
			} else {
				f.register(ev.Name, rs, false)
			}
		})
	case "deleted":
		f.mu.Lock()
		rs.deleted = true
		registered := rs.registered
		f.mu.Unlock()
		if registered {
			_ = f.gl.Unregister(p.token, ev.Name)
		}
	}
}

// The GitLab emulator reports job events synchronously, into onJob, which takes
// f.mu: so f.mu is never held while calling it.

func (f *Fleet) register(name string, rs *runnerState, booting bool) {
	f.mu.Lock()
	skip := rs.deleted || rs.registered
	f.mu.Unlock()
	if skip {
		return
	}
	if err := f.gl.RegisterManager(rs.pool.token, name, glemu.ManagerOptions{Capacity: rs.pool.Capacity, Booting: booting}); err != nil {
		return
	}
	f.mu.Lock()
	rs.registered = true
	if !booting {
		rs.ready, rs.readyAt = true, f.clock.Now()
	}
	draining := rs.draining
	f.mu.Unlock()
	if draining {
		_ = f.gl.Pause(rs.pool.token, name)
	}
}

func (f *Fleet) setReady(name string, rs *runnerState) {
	f.mu.Lock()
	skip := rs.deleted || !rs.registered
	f.mu.Unlock()
	if skip {
		return
	}
	if err := f.gl.SetReady(rs.pool.token, name); err == nil {
		f.mu.Lock()
		rs.ready, rs.readyAt = true, f.clock.Now()
		f.mu.Unlock()
	}
}

var _ reconcile.Runners = (*Fleet)(nil)

// Observe reports each Droplet's runner from GitLab's view (snap, read through
// the API) and what the fleet remembers of its jobs.
func (f *Fleet) Observe(_ context.Context, snap demand.Snapshot, droplets []cloud.Droplet) (map[int]reconcile.RunnerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[int]reconcile.RunnerStatus, len(droplets))
	for _, d := range droplets {
		rs := f.runners[d.Name]
		if rs == nil || !rs.registered {
			continue
		}
		st := reconcile.RunnerStatus{Registered: rs.ready, RegisteredAt: rs.readyAt, Draining: rs.draining,
			JobsDone: rs.jobsDone, LastJobFinishedAt: rs.lastFinished}
		running := snap.RunningBySystemID[d.Name]
		if rs.ready {
			st.Running = len(running)
		} else {
			for _, j := range running { // taken while the machine boots
				st.Waiting = append(st.Waiting, policy.Job{ID: j.ID, Tags: j.Tags, QueuedAt: j.StartedAt})
			}
		}
		out[d.ID] = st
	}
	return out, nil
}

// Drain flips the manager's switch: it takes no new jobs.
func (f *Fleet) Drain(_ context.Context, d cloud.Droplet) (int, error) {
	f.mu.Lock()
	rs := f.runners[d.Name]
	if rs != nil {
		rs.draining = true
	}
	registered := rs != nil && rs.registered
	f.mu.Unlock()
	if !registered {
		return 0, nil // no runner ever registered: nothing can be running
	}
	if err := f.gl.Pause(rs.pool.token, d.Name); err != nil {
		return 0, fmt.Errorf("pause runner %s: %w", d.Name, err)
	}
	for _, m := range f.gl.Managers() {
		if m.SystemID == d.Name {
			return m.Running, nil
		}
	}
	return 0, nil
}
