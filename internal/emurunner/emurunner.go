// Package emurunner plays the runner side of emulated runner Droplets: when the
// DigitalOcean emulator boots a runner Droplet, a runner manager for it
// registers in the GitLab emulator (system_id = the Droplet's name) after a
// registration delay, and it goes when the Droplet is deleted. It implements
// reconcile.Runners with the GitLab emulator's drain switch, as the daemon does
// with SSH. The simulator and the reconciler's tests use it.
//
// Pools whose runners accept jobs before they have a machine for them
// (docker+machine with IdleCount = 0) get one more manager, the pool's
// acceptor: it takes pending jobs while the pool's runners hold fewer than the
// pool's limit, and hands each to a Droplet's runner when one is up with a
// free slot; the job waits the boot.
package emurunner

import (
	"context"
	"errors"
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
	Name        string
	Tags        []string
	RunUntagged bool
	// Capacity is how many jobs one Droplet's runner runs at once.
	Capacity int
	// AcceptLimit, when > 0, gives the pool an acceptor that holds up to this
	// many jobs waiting for machines.
	AcceptLimit int
}

// Fleet tracks the emulated runners. Wire its OnDroplet into doemu.Options.
type Fleet struct {
	gl            *glemu.Server
	clock         clock.Clock
	registerDelay time.Duration

	mu      sync.Mutex
	pools   map[string]*pool
	runners map[string]*runnerState // by Droplet name
	booted  time.Duration           // boot time of the Droplets done booting
}

type pool struct {
	Pool
	token    string
	acceptor string // the acceptor's system_id, or ""
}

type runnerState struct {
	pool         *pool
	createdAt    time.Time
	registered   bool
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
		r, err := gl.CreateRunner(glemu.RunnerSpec{Description: "shoal-" + p.Name, Tags: p.Tags, RunUntagged: p.RunUntagged})
		if err != nil {
			return nil, fmt.Errorf("create runner for pool %s: %w", p.Name, err)
		}
		p.Capacity = max(p.Capacity, 1)
		limit := p.AcceptLimit
		p.AcceptLimit = 0 // SetAcceptLimit, below, puts it in force
		f.pools[p.Name] = &pool{Pool: p, token: r.Token}
		if err := f.SetAcceptLimit(p.Name, limit); err != nil {
			return nil, err
		}
	}
	gl.Observe(f.onJob)
	return f, nil
}

// The GitLab emulator reports job events synchronously, into onJob; f.mu is
// never held while calling it.

func (f *Fleet) onJob(ev glemu.Event) {
	switch ev.Job.Status {
	case glemu.StatusSuccess, glemu.StatusFailed:
		f.mu.Lock()
		rs := f.runners[ev.Job.SystemID]
		if rs != nil {
			rs.jobsDone++
			rs.lastFinished = ev.Time
		}
		f.mu.Unlock()
		if rs != nil {
			f.handover(rs.pool) // a slot freed
		}
	case glemu.StatusRunning:
		for _, p := range f.pools { // the acceptor took a job: a free machine may run it now
			f.mu.Lock()
			acceptor := p.acceptor
			f.mu.Unlock()
			if acceptor != "" && ev.Job.SystemID == acceptor {
				f.handover(p)
			}
		}
	}
}

// handover gives the acceptor's jobs to the pool's ready, undrained runners.
func (f *Fleet) handover(p *pool) {
	f.mu.Lock()
	acceptor := p.acceptor
	if acceptor == "" {
		f.mu.Unlock()
		return
	}
	ready := f.readyLocked(p)
	f.mu.Unlock()
	for _, name := range ready {
		_, _ = f.gl.Handover(p.token, acceptor, name)
	}
}

// readyLocked lists the pool's registered, undrained runners in name order
// (map order is random; a replay must not be). f.mu must be held.
func (f *Fleet) readyLocked(p *pool) []string {
	var ready []string
	for name, rs := range f.runners {
		if rs.pool == p && rs.registered && !rs.draining && !rs.deleted {
			ready = append(ready, name)
		}
	}
	slices.Sort(ready)
	return ready
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
		rs = &runnerState{pool: p, createdAt: ev.At}
		f.runners[ev.Name] = rs
	}
	f.mu.Unlock()

	switch ev.Kind {
	case "active":
		f.clock.AfterFunc(f.registerDelay, func() { f.register(ev.Name, rs) })
	case "deleted":
		f.mu.Lock()
		rs.deleted = true
		registered := rs.registered
		if !registered {
			f.booted += ev.At.Sub(rs.createdAt)
		}
		delete(f.runners, ev.Name)
		f.mu.Unlock()
		if registered {
			_ = f.gl.Unregister(p.token, ev.Name)
		}
	}
}

func (f *Fleet) register(name string, rs *runnerState) {
	f.mu.Lock()
	skip := rs.deleted || rs.registered
	f.mu.Unlock()
	if skip {
		return
	}
	if err := f.gl.RegisterManager(rs.pool.token, name, glemu.ManagerOptions{Capacity: rs.pool.Capacity}); err != nil {
		return
	}
	f.mu.Lock()
	rs.registered, rs.readyAt = true, f.clock.Now()
	f.booted += rs.readyAt.Sub(rs.createdAt)
	// Behind an acceptor a machine's runner asks GitLab for nothing itself:
	// the acceptor hands it its jobs. A drained runner takes none either.
	pause := rs.draining || rs.pool.AcceptLimit > 0
	f.mu.Unlock()
	if pause {
		_ = f.gl.Pause(rs.pool.token, name)
	}
	f.handover(rs.pool)
}

// SetAcceptLimit switches a pool's runners between taking jobs themselves
// (limit 0) and having them accepted before there is a machine for them, by
// the pool's acceptor, up to limit at once: a policy's acceptance can change
// with the settings a period puts in force (docker+machine's IdleCount 0).
func (f *Fleet) SetAcceptLimit(pool string, limit int) error {
	f.mu.Lock()
	p := f.pools[pool]
	if p == nil || p.AcceptLimit == limit {
		f.mu.Unlock()
		return nil
	}
	p.AcceptLimit = limit
	ready := f.readyLocked(p)
	register := limit > 0 && p.acceptor == ""
	if register {
		p.acceptor = "acceptor-" + p.Name
	}
	f.mu.Unlock()

	var err error
	switch {
	case register:
		err = f.gl.RegisterManager(p.token, p.acceptor, glemu.ManagerOptions{Capacity: limit, Booting: true})
	case limit > 0:
		err = errors.Join(f.gl.SetCapacity(p.token, p.acceptor, limit), f.gl.Resume(p.token, p.acceptor))
	default:
		// The acceptor takes no more; what it holds is still handed over.
		err = f.gl.Pause(p.token, p.acceptor)
	}
	for _, name := range ready {
		if limit > 0 {
			err = errors.Join(err, f.gl.Pause(p.token, name))
		} else {
			err = errors.Join(err, f.gl.Resume(p.token, name))
		}
	}
	if err != nil {
		return fmt.Errorf("pool %s: accept up to %d jobs ahead of machines: %w", pool, limit, err)
	}
	f.handover(p)
	return nil
}

// Slots counts job slots on live Droplets: booting (runner not up yet) and
// ready (up, draining or not).
func (f *Fleet) Slots() (booting, ready int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rs := range f.runners {
		if rs.registered {
			ready += rs.pool.Capacity
		} else {
			booting += rs.pool.Capacity
		}
	}
	return booting, ready
}

// BootTime is how long the runner Droplets made so far have spent between
// their create and their runner registering (or their delete, if it never
// did): time billed in which no job can run.
func (f *Fleet) BootTime() time.Duration {
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.booted
	for _, rs := range f.runners {
		if !rs.registered {
			t += now.Sub(rs.createdAt)
		}
	}
	return t
}

var _ reconcile.Runners = (*Fleet)(nil)

// Observe reports each Droplet's runner as the runner itself knows it (from the
// GitLab emulator's view of its manager, as the daemon asks the runner over SSH),
// and the jobs each pool's acceptor holds.
func (f *Fleet) Observe(_ context.Context, _ demand.Snapshot, droplets []cloud.Droplet) (reconcile.Observation, error) {
	managers := map[string]glemu.ManagerInfo{}
	for _, m := range f.gl.Managers() {
		managers[m.SystemID] = m
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	obs := reconcile.Observation{Droplets: make(map[int]reconcile.RunnerStatus, len(droplets)), Waiting: map[string][]policy.Job{}}
	for _, d := range droplets {
		rs := f.runners[d.Name]
		m, ok := managers[d.Name]
		if rs == nil || !rs.registered || !ok {
			continue
		}
		obs.Droplets[d.ID] = reconcile.RunnerStatus{Registered: true, RegisteredAt: rs.readyAt, Draining: rs.draining,
			Running: m.Running, JobsDone: rs.jobsDone, LastJobFinishedAt: rs.lastFinished}
	}
	for name, p := range f.pools {
		for _, id := range managers[p.acceptor].Jobs {
			obs.Waiting[name] = append(obs.Waiting[name], policy.Job{ID: id})
		}
	}
	return obs, nil
}

// Drain flips the runner's switch: it takes no new jobs (and, behind an
// acceptor, is handed none).
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
	// Drain, not Pause: an acceptor hands no job to a draining runner, so
	// the running count read next is final.
	if err := f.gl.Drain(rs.pool.token, d.Name); err != nil {
		return 0, fmt.Errorf("drain runner %s: %w", d.Name, err)
	}
	for _, m := range f.gl.Managers() {
		if m.SystemID == d.Name {
			return m.Running, nil
		}
	}
	return 0, nil
}
