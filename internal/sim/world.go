package sim

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/emurunner"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/inproc"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/reconcile"
)

// Epoch is where a trace's time starts: Monday 00:00 UTC, as the trace format
// says (2026-01-05 was a Monday).
var Epoch = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// WorldOptions describe an emulated DigitalOcean + GitLab with shoal's
// autoscaler wired to them.
type WorldOptions struct {
	Start   time.Time // default Epoch
	Seed    uint64
	Pools   []config.Pool
	Billing config.BillingModel
	Policy  policy.Policy
	// BootDelay is how long a Droplet takes to become active (default 45–75 s);
	// RegisterDelay how long its runner then takes to register (default 20 s).
	BootDelay     doemu.Range
	RegisterDelay time.Duration
	// DigitalOcean side: account limit (default 1,000), rate limits (default
	// DigitalOcean's), faults.
	DropletLimit                         int
	RateLimitPerMinute, RateLimitPerHour int
	Faults                               doemu.Faults
	// RequestsPerMinute and RequestsPerHour are shoal's budget (default 80 % of DigitalOcean's).
	RequestsPerMinute, RequestsPerHour int
	// WrapDO wraps the DigitalOcean emulator's handler, e.g. with a contract
	// validator; WrapGL the GitLab emulator's API, e.g. to fail it.
	WrapDO, WrapGL func(http.Handler) http.Handler
	Logger         *slog.Logger
}

// World is the wired-up system, driven on a virtual clock.
type World struct {
	Clock      *clock.Virtual
	DO         *doemu.Server
	GL         *glemu.Server
	Cloud      *cloud.DO
	Demand     *demand.Source
	Fleet      *emurunner.Fleet
	Reconciler *reconcile.Reconciler
	Webhook    *demand.Webhook
	ProjectID  int64
	pools      []config.Pool
	policy     policy.Policy

	// ColdStart is the shortest time from a Droplet's create to its runner
	// taking jobs (the shortest boot plus registration): a job that finds no
	// slot, ready or booting, waits at least this long.
	ColdStart time.Duration
}

const (
	simToken   = "dop_v1_simulator"
	glToken    = "glpat-simulator"
	hookSecret = "simulator-hook-secret"
)

// NewWorld builds the emulators, the real clients over in-process transports,
// and the reconciler with the policy.
func NewWorld(o WorldOptions) (*World, error) {
	if o.Start.IsZero() {
		o.Start = Epoch
	}
	if o.BootDelay == (doemu.Range{}) {
		o.BootDelay = doemu.Range{Min: 45 * time.Second, Max: 75 * time.Second}
	}
	if o.RegisterDelay == 0 {
		o.RegisterDelay = 20 * time.Second
	}
	if o.DropletLimit == 0 {
		o.DropletLimit = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &World{Clock: clock.NewVirtual(o.Start), ColdStart: o.BootDelay.Min + o.RegisterDelay, pools: o.Pools, policy: o.Policy}
	// Sleeps inside the clients (retry back-off, action polling) move the clock
	// themselves: the simulation has one thread, and it is the one sleeping.
	clk := clock.SelfAdvancing{Virtual: w.Clock}

	w.GL = glemu.New(glemu.Options{Clock: w.Clock, Tokens: []string{glToken}, Logger: o.Logger})
	var err error
	if w.ProjectID, err = w.GL.AddProject("app", 0); err != nil {
		return nil, err
	}
	var runnerPools []emurunner.Pool
	for _, p := range o.Pools {
		acc := o.Policy.Acceptance(p.Effective(o.Start))
		runnerPools = append(runnerPools, emurunner.Pool{Name: p.Name, Tags: p.Tags, RunUntagged: p.RunUntagged, Capacity: acc.SlotsPerDroplet})
	}
	if w.Fleet, err = emurunner.New(w.GL, w.Clock, o.RegisterDelay, runnerPools); err != nil {
		return nil, err
	}
	if err := w.FollowSettings(o.Start); err != nil {
		return nil, err
	}

	w.DO, err = doemu.New(doemu.Options{Clock: w.Clock, Tokens: []string{simToken}, BootDelay: o.BootDelay,
		RateLimitPerMinute: o.RateLimitPerMinute, RateLimitPerHour: o.RateLimitPerHour, DropletLimit: o.DropletLimit,
		Billing: o.Billing, Faults: o.Faults, Seed: o.Seed, OnDroplet: w.Fleet.OnDroplet})
	if err != nil {
		return nil, err
	}
	var doHandler http.Handler = w.DO
	if o.WrapDO != nil {
		doHandler = o.WrapDO(doHandler)
	}
	if w.Cloud, err = cloud.New(cloud.Config{Token: simToken, APIURL: "http://digitalocean.sim",
		HTTPClient: &http.Client{Transport: inproc.Transport(doHandler)}, Clock: clk}); err != nil {
		return nil, err
	}

	glTransport := w.GL.Transport()
	if o.WrapGL != nil {
		glTransport = inproc.Transport(o.WrapGL(w.GL))
	}
	gl, err := gitlab.NewClient(glToken, gitlab.WithBaseURL("http://gitlab.sim/api/v4"),
		gitlab.WithHTTPClient(&http.Client{Transport: glTransport}), gitlab.WithoutRetries())
	if err != nil {
		return nil, fmt.Errorf("GitLab client: %w", err)
	}
	// The runners report their own jobs (emurunner), so GitLab is asked only
	// for the queue, and only as far as the pools could ever take from it.
	if w.Demand, err = demand.NewSource(gl, demand.Config{Projects: []string{fmt.Sprint(w.ProjectID)},
		MaxPending: demand.PendingCap(o.Pools)}, w.Clock); err != nil {
		return nil, err
	}
	if w.Webhook, err = demand.NewWebhook(hookSecret, o.Logger); err != nil {
		return nil, err
	}
	// shoal only needs to hear of jobs becoming pending.
	if err := w.GL.AddJobHook(glemu.HookConfig{Handler: w.Webhook, Secret: hookSecret, Statuses: []string{glemu.StatusPending}}); err != nil {
		return nil, err
	}

	w.Reconciler = reconcile.New(w.Cloud, w.Demand, w.Fleet, o.Policy, w.Clock, reconcile.Config{
		Pools: o.Pools, Billing: o.Billing, RequestsPerMinute: o.RequestsPerMinute, RequestsPerHour: o.RequestsPerHour,
		Seed: o.Seed + 1, Logger: o.Logger, Drains: 1})
	return w, nil
}

// FollowSettings puts in force how the policy's runners take jobs under the
// settings of now: a period can turn docker+machine's IdleCount to 0, and its
// runners then accept jobs before their machines exist.
func (w *World) FollowSettings(now time.Time) error {
	for _, p := range w.pools {
		limit := 0
		if acc := w.policy.Acceptance(p.Effective(now)); acc.Mode == policy.AcceptThenProvision {
			limit = acc.Limit
		}
		if err := w.Fleet.SetAcceptLimit(p.Name, limit); err != nil {
			return err
		}
	}
	return nil
}
