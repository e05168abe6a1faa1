// Package policy decides how many runner Droplets each pool should have. A
// policy is a pure function from a Snapshot (demand, fleet, clock) to
// Decisions (create N in pool P, drain Droplet D, delete Droplet D), each with
// a human-readable Reason, in the style of nomad-autoscaler's strategies: no
// I/O, no clock reads, the same input always gives the same output, so the
// reconciler and the simulator run exactly the same code.
//
// Policies: shoal's own ("shoal"), and faithful baselines of GitLab Runner's
// autoscalers ("docker-machine", "taskscaler") and a fixed fleet ("static").
package policy

import (
	"fmt"
	"time"

	"github.com/shoalci/shoal/internal/config"
)

// DropletState is where a runner Droplet is in its life.
type DropletState int

const (
	// Booting: created, runner not registered yet; it will have slots.
	Booting DropletState = iota
	// Ready: the runner takes jobs.
	Ready
	// Draining: the runner takes no new jobs; running ones finish.
	Draining
)

func (s DropletState) String() string {
	switch s {
	case Booting:
		return "booting"
	case Ready:
		return "ready"
	case Draining:
		return "draining"
	}
	return fmt.Sprintf("DropletState(%d)", int(s))
}

// Droplet is one runner Droplet as the reconciler sees it.
type Droplet struct {
	ID    int
	Name  string
	State DropletState
	// CreatedAt is when billing started.
	CreatedAt time.Time
	// ReadyAt is when the runner registered; zero while booting.
	ReadyAt     time.Time
	RunningJobs int
	// LastJobFinishedAt is zero if the Droplet never finished a job.
	LastJobFinishedAt time.Time
	// JobsDone counts jobs finished on this Droplet.
	JobsDone int
}

// idleSince is when the Droplet last became idle: its last job's end, or
// when it became ready (taskscaler's rule: "from the last job, or from
// provisioning"; docker+machine's details.Used is set the same way).
func (d *Droplet) idleSince() time.Time {
	if d.LastJobFinishedAt.After(d.ReadyAt) {
		return d.LastJobFinishedAt
	}
	return d.ReadyAt
}

// Job is a CI job: pending, or (in Pool.Upcoming) created.
type Job struct {
	ID        int64
	Tags      []string
	CreatedAt time.Time
	QueuedAt  time.Time // when it became pending (pending jobs only)
}

// Pool is one pool's demand and fleet at the snapshot's time.
type Pool struct {
	// Settings are the pool's settings in force now (config.Pool.Effective).
	Settings config.Settings
	// Pending are jobs waiting in GitLab that this pool's runners could take
	// (config.Pool.Takes: GitLab's tag rules). A job may be listed in several pools;
	// shoal's policy counts it once, in the most specific pool.
	Pending []Job
	// Waiting are jobs a runner manager of this pool has already taken (GitLab
	// shows them running) but that have no slot yet. Only policies whose
	// Acceptance is AcceptThenProvision produce them.
	Waiting []Job
	// Upcoming are created jobs this pool's runners could take: they wait for
	// their pipeline's earlier stages. Like Pending, a job may be listed in
	// several pools.
	Upcoming []Job
	Droplets []Droplet
}

// Snapshot is everything a policy may look at.
type Snapshot struct {
	Now     time.Time
	Billing config.BillingModel
	Pools   []Pool
}

// Kind is what a decision does.
type Kind int

const (
	Create Kind = iota
	Drain
	Delete
)

func (k Kind) String() string {
	switch k {
	case Create:
		return "create"
	case Drain:
		return "drain"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Decision is one action for the reconciler. Delete is only ever decided for
// a Droplet with no running jobs (draining, or ready and idle), and the
// reconciler drains its runner first and deletes only when the drain reports
// no running job: a policy never kills a job.
type Decision struct {
	Kind Kind
	Pool string
	// Count is how many Droplets to create (Create only).
	Count int
	// DropletID is the Droplet to drain or delete.
	DropletID int
	Reason    string
}

func (d Decision) String() string {
	if d.Kind == Create {
		return fmt.Sprintf("create %d in pool %s: %s", d.Count, d.Pool, d.Reason)
	}
	return fmt.Sprintf("%s droplet %d in pool %s: %s", d.Kind, d.DropletID, d.Pool, d.Reason)
}

// AcceptanceMode is how a policy's runners take jobs from GitLab. Baselines
// differ here as much as in scaling, so a simulator must honour it.
type AcceptanceMode int

const (
	// AcceptOnFreeSlot: a runner asks GitLab for a job only when a ready,
	// non-draining Droplet has a free slot, and the job starts there at once.
	// shoal, static, docker+machine with IdleCount > 0 ("no free machines that
	// can process builds": it asks for no job at all), taskscaler in
	// preemptive mode (a job is requested only once a slot is confirmed).
	AcceptOnFreeSlot AcceptanceMode = iota
	// AcceptThenProvision: a runner manager takes a pending job whenever it
	// runs fewer than Limit jobs, slot or not; a job taken without a free slot
	// is Waiting (GitLab shows it running) until a slot boots or frees, so it
	// waits the whole boot. docker+machine with IdleCount = 0 (the machine is
	// created inside the job), taskscaler in non-preemptive mode.
	AcceptThenProvision
)

func (m AcceptanceMode) String() string {
	if m == AcceptThenProvision {
		return "accept-then-provision"
	}
	return "on-free-slot"
}

// Acceptance describes how a policy's runners use a pool's Droplets and how
// often the policy decides: what a simulator must honour to replay it.
type Acceptance struct {
	Mode AcceptanceMode
	// SlotsPerDroplet is how many jobs one Droplet runs at once under this
	// policy (docker+machine: always 1).
	SlotsPerDroplet int
	// Limit is the most jobs the pool's runners hold at once, running and
	// waiting (GitLab Runner's limit).
	Limit int
	// DecideEvery is how often the original decides; 0 means the config's
	// reconcile_interval (shoal, static).
	DecideEvery time.Duration
	// DecideOnJobHook: the original also decides at once when a Job Hook
	// reports a pending job (shoal's webhook receiver).
	DecideOnJobHook bool
	// ReadsQueue: the policy looks at Pool.Pending, so the reconciler must read
	// GitLab's queue. GitLab Runner's autoscalers never do (they scale by idle
	// machines and slots in use), so for them the read is skipped.
	ReadsQueue bool
}

// CheckInterval is GitLab Runner's default check_interval: how often a runner
// manager asks GitLab for jobs, and so how often its autoscaler runs.
const CheckInterval = 3 * time.Second

// State is what a policy remembers between Decides. It is passed in and
// returned explicitly so that Decide stays a pure function; the zero State is
// a valid start. Decide never modifies the State it is given.
type State struct {
	shoal map[string]*shoalPool
}

// Policy decides.
type Policy interface {
	// Name is the registry name ("shoal", "docker-machine", ...).
	Name() string
	// Params are the parameters the policy was built with.
	Params() Params
	// Acceptance is how this policy's runners take jobs in a pool with
	// these settings.
	Acceptance(s config.Settings) Acceptance
	// Decide returns the decisions for the snapshot and the new state.
	Decide(s Snapshot, prev State) ([]Decision, State)
}
