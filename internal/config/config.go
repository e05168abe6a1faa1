// Package config reads shoal's autoscaler configuration: runner pools with their
// Droplet shape and scaling settings, period overrides selected by cron
// expressions, and the global reconcile interval, DigitalOcean rate budget and
// billing model. The file is strict: every unknown key and bad value is an
// error naming the key and its line, and all of them are reported at once.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/shoalci/shoal/internal/tags"
)

// BillingModel is how DigitalOcean bills a Droplet's lifetime.
type BillingModel string

const (
	// BillingPerSecond bills every second a Droplet exists, with a 60-second
	// minimum (DigitalOcean's model since 2026-01-01).
	BillingPerSecond BillingModel = "per-second"
	// BillingHourly bills every started hour (DigitalOcean's model before 2026).
	BillingHourly BillingModel = "hourly"
)

// Valid reports whether b is one of the billing models.
func (b BillingModel) Valid() bool { return b == BillingPerSecond || b == BillingHourly }

// MinimumBilled is the shortest time a per-second Droplet is billed for.
const MinimumBilled = 60 * time.Second

// PaidUntil returns the instant up to which a Droplet created at created and
// still alive at now has already been paid for: deleting it before then saves
// nothing. Per-second: the later of now and the 60-second minimum. Hourly: the
// end of the hour that is being billed at now.
func (b BillingModel) PaidUntil(created, now time.Time) time.Time {
	age := now.Sub(created)
	if age < 0 {
		age = 0
	}
	switch b {
	case BillingHourly:
		hours := age/time.Hour + 1
		return created.Add(hours * time.Hour)
	default:
		if age < MinimumBilled {
			return created.Add(MinimumBilled)
		}
		return now
	}
}

// BilledSeconds is what a Droplet alive for d costs, in billed seconds.
func (b BillingModel) BilledSeconds(d time.Duration) float64 {
	if d < 0 {
		d = 0
	}
	switch b {
	case BillingHourly:
		hours := (d + time.Hour - 1) / time.Hour
		if hours < 1 {
			hours = 1
		}
		return float64(hours) * 3600
	default:
		if d < MinimumBilled {
			d = MinimumBilled
		}
		return d.Seconds()
	}
}

// DigitalOcean's per-token API limits.
const (
	APIRequestsPerMinute = 250
	APIRequestsPerHour   = 5000
)

// Config is a whole configuration file.
type Config struct {
	// ReconcileInterval is how often the reconciler looks at demand and fleet
	// when nothing else (a Job Hook) wakes it.
	ReconcileInterval time.Duration
	// RateBudget is the share (0, 1] of DigitalOcean's per-token limits shoal
	// may use; the rest is left to other tools sharing the token.
	RateBudget float64
	// Billing is how Droplets are billed; the policy releases capacity with it in mind.
	Billing BillingModel
	Pools   []Pool
	// GitLab and Daemon are read only by the daemon (shoal autoscale); the
	// simulator makes its own GitLab.
	GitLab GitLab
	Daemon Daemon
}

// GitLab is where the daemon reads demand: the [gitlab] table. The API token
// is not in the file but in the environment (GITLAB_TOKEN).
type GitLab struct {
	// URL is the GitLab instance, like "https://gitlab.example.com".
	URL string
	// Projects and Groups (IDs or full paths) are watched for pending jobs.
	Projects, Groups []string
	// JobsAPIPerMinute is how many GET /projects/:id/jobs requests shoal may
	// make a minute (0: the demand source's default, half of GitLab's 600).
	JobsAPIPerMinute int
	// UnreadableLimit is how long the job queue may be unreadable before the
	// daemon drains the fleet down to min_instances (0: the reconciler's
	// default, an hour; negative, from "0" in the file: never).
	UnreadableLimit time.Duration
}

// Daemon is how the daemon reaches its runners and serves: the [daemon] table.
type Daemon struct {
	// Listen is the address of the Job Hook receiver (/hooks/gitlab), the
	// metrics (/metrics) and the health check (/healthz).
	Listen string
	// SSHKeys are DigitalOcean SSH key IDs or fingerprints put on every runner
	// Droplet; SSHIdentity is the private key of one of them, with which
	// shoal drains runners.
	SSHKeys     []string
	SSHIdentity string
	// StateDir keeps what must outlive a restart: the runner Droplets' SSH
	// host key, and what the policy has learned.
	StateDir string
	// PrivateNetwork reaches runner Droplets at their VPC address.
	PrivateNetwork bool
	// ShutdownLimit is how long a Droplet whose runner cannot be reached,
	// shut down gracefully, may take to power off before it is deleted all
	// the same (0: the reconciler's default, 3 hours).
	ShutdownLimit time.Duration
}

// RequestsPerMinute is the budget's share of DigitalOcean's 250 requests/minute.
func (c Config) RequestsPerMinute() int { return int(APIRequestsPerMinute * c.RateBudget) }

// RequestsPerHour is the budget's share of DigitalOcean's 5,000 requests/hour.
func (c Config) RequestsPerHour() int { return int(APIRequestsPerHour * c.RateBudget) }

// Pool returns the pool named name.
func (c Config) Pool(name string) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return Pool{}, false
}

// Scaling holds the settings a period can override. Names follow GitLab Runner's
// [runners.autoscaler] and [[runners.autoscaler.policy]].
type Scaling struct {
	// MinInstances is the fewest Droplets the pool keeps, busy or not.
	MinInstances int
	// MaxInstances is the most Droplets the pool may have, draining ones included.
	MaxInstances int
	// IdleCount is the number of spare job slots (not Droplets) to keep ready.
	IdleCount int
	// IdleTime is how long an idle Droplet may stay before it is released.
	IdleTime time.Duration
	// ScaleFactor asks for spare slots as a factor of the slots in use.
	ScaleFactor float64
	// ScaleFactorLimit caps the slots ScaleFactor asks for (0: no cap).
	ScaleFactorLimit int
}

// Takes reports whether the pool's runners may take a job with these tags.
func (p Pool) Takes(jobTags []string) bool { return tags.Takes(p.Tags, p.RunUntagged, jobTags) }

// Pool is one kind of runner Droplet and how many of them to keep.
type Pool struct {
	Name string
	// Tags are the runner's tags: it takes jobs whose tags are all among them.
	Tags []string
	// RunUntagged lets the pool's runners take jobs without tags too, as
	// GitLab Runner's run_untagged; a pool without tags always does.
	RunUntagged bool
	Region      string
	Size        string
	Image       string
	// CapacityPerInstance is how many jobs one Droplet runs at a time.
	CapacityPerInstance int
	Scaling
	// Periods override Scaling at matching times; the last match wins.
	Periods []Period
	// RunnerID is the GitLab runner every Droplet of the pool runs a manager
	// of, and RunnerTokenEnv the environment variable holding its
	// authentication token (glrt-…). The daemon needs both; the simulator
	// makes its own runners.
	RunnerID       int
	RunnerTokenEnv string
}

// TokenEnv is the environment variable holding the pool's runner token:
// runner_token_env, or SHOAL_RUNNER_TOKEN_<NAME> (dashes as underscores).
func (p Pool) TokenEnv() string {
	if p.RunnerTokenEnv != "" {
		return p.RunnerTokenEnv
	}
	return "SHOAL_RUNNER_TOKEN_" + strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))
}

// Period is one [[pool.policy]]: settings in force while any of its cron
// expressions matches the current minute in its timezone.
type Period struct {
	Specs    []string
	Timezone *time.Location
	// Set holds the overridden keys; the others keep the pool's values.
	Set       map[string]bool
	Overrides Scaling

	schedules []*cron.SpecSchedule
}

// Matches reports whether t falls in a minute selected by any of the period's
// cron expressions, read in the period's timezone.
func (p Period) Matches(t time.Time) bool {
	lt := t.In(p.Timezone)
	for _, s := range p.schedules {
		if specMatches(s, lt) {
			return true
		}
	}
	return false
}

// starBit marks a field written as "*" in robfig/cron's SpecSchedule.
const starBit = 1 << 63

// specMatches mirrors robfig/cron's own matching in SpecSchedule.Next, minute
// by minute, without searching forward: seconds are ignored (periods select
// minutes), and day-of-month and day-of-week are ORed when both are restricted,
// as in cron.
func specMatches(s *cron.SpecSchedule, t time.Time) bool {
	if s.Minute&(1<<uint(t.Minute())) == 0 || s.Hour&(1<<uint(t.Hour())) == 0 ||
		s.Month&(1<<uint(t.Month())) == 0 {
		return false
	}
	dom := s.Dom&(1<<uint(t.Day())) != 0
	dow := s.Dow&(1<<uint(t.Weekday())) != 0
	if s.Dom&starBit != 0 || s.Dow&starBit != 0 {
		return dom && dow
	}
	return dom || dow
}

// Settings are a pool's settings in force at one moment: what a policy reads.
type Settings struct {
	Pool                string
	Tags                []string
	CapacityPerInstance int
	Scaling
	// Period is the index of the [[pool.policy]] in force, or -1 for none.
	Period int
}

// Effective returns the pool's settings in force at t: its own, overridden by
// the last [[pool.policy]] whose periods match t (GitLab Runner's rule for
// [[runners.autoscaler.policy]]: "the last matching policy wins").
func (p Pool) Effective(t time.Time) Settings {
	s := Settings{Pool: p.Name, Tags: p.Tags, CapacityPerInstance: p.CapacityPerInstance, Scaling: p.Scaling, Period: -1}
	for i := len(p.Periods) - 1; i >= 0; i-- {
		per := p.Periods[i]
		if !per.Matches(t) {
			continue
		}
		s.Period = i
		o := per.Overrides
		if per.Set["min_instances"] {
			s.MinInstances = o.MinInstances
		}
		if per.Set["max_instances"] {
			s.MaxInstances = o.MaxInstances
		}
		if per.Set["idle_count"] {
			s.IdleCount = o.IdleCount
		}
		if per.Set["idle_time"] {
			s.IdleTime = o.IdleTime
		}
		if per.Set["scale_factor"] {
			s.ScaleFactor = o.ScaleFactor
		}
		if per.Set["scale_factor_limit"] {
			s.ScaleFactorLimit = o.ScaleFactorLimit
		}
		break
	}
	// A period cannot push min past max: the max wins, so spending stays bounded.
	if s.MinInstances > s.MaxInstances {
		s.MinInstances = s.MaxInstances
	}
	return s
}

// MostInstances is the most Droplets the pool may ever have: its
// max_instances, or a period's when that is higher.
func (p Pool) MostInstances() int {
	most := p.MaxInstances
	for _, per := range p.Periods {
		if per.Set["max_instances"] {
			most = max(most, per.Overrides.MaxInstances)
		}
	}
	return most
}

// Defaults for keys a file leaves out.
const (
	DefaultReconcileInterval   = 15 * time.Second
	DefaultRateBudget          = 0.8
	DefaultBilling             = BillingPerSecond
	DefaultRegion              = "nyc3"
	DefaultSize                = "s-2vcpu-4gb"
	DefaultImage               = "ubuntu-24-04-x64"
	DefaultCapacityPerInstance = 1
	DefaultMaxInstances        = 10
	DefaultIdleTime            = 5 * time.Minute
	DefaultListen              = ":9252"
	DefaultStateDir            = "/var/lib/shoal"
)

// DaemonReady reports, all at once, what the daemon needs that the file
// leaves out; the simulator needs none of it.
func (c Config) DaemonReady(file string) error {
	var probs []Problem
	missing := func(key, msg string) { probs = append(probs, Problem{File: file, Key: key, Msg: msg}) }
	if c.GitLab.URL == "" {
		missing("gitlab.url", `is required: the GitLab to read jobs from, like "https://gitlab.example.com"`)
	}
	if len(c.GitLab.Projects) == 0 && len(c.GitLab.Groups) == 0 {
		missing("gitlab.projects", "name at least one project or group (gitlab.groups) whose jobs the runners take")
	}
	if len(c.Daemon.SSHKeys) == 0 {
		missing("daemon.ssh_keys", "is required: the DigitalOcean SSH key (ID or fingerprint) shoal drains runners with")
	}
	if c.Daemon.SSHIdentity == "" {
		missing("daemon.ssh_identity", "is required: the path of the private half of one of daemon.ssh_keys")
	}
	if len(c.Pools) == 0 {
		missing("pool", "define at least one [[pool]]")
	}
	for _, p := range c.Pools {
		if p.RunnerID == 0 {
			missing("pool.runner_id", fmt.Sprintf("pool %q needs the ID of the GitLab runner its Droplets run as (create one with its tags in GitLab, then give its ID here and its token in $%s)", p.Name, p.TokenEnv()))
		}
	}
	if len(probs) > 0 {
		return &Error{Problems: probs}
	}
	return nil
}

// Default returns the configuration of an empty file: global defaults, no pools.
func Default() Config {
	return Config{ReconcileInterval: DefaultReconcileInterval, RateBudget: DefaultRateBudget, Billing: DefaultBilling,
		Daemon: Daemon{Listen: DefaultListen, StateDir: DefaultStateDir}}
}

// DefaultPool returns a pool named name with every default filled in.
func DefaultPool(name string) Pool {
	return Pool{
		Name: name, Region: DefaultRegion, Size: DefaultSize, Image: DefaultImage,
		CapacityPerInstance: DefaultCapacityPerInstance,
		Scaling:             Scaling{MaxInstances: DefaultMaxInstances, IdleTime: DefaultIdleTime},
	}
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read autoscaler config: %w", err)
	}
	return Parse(path, data)
}
