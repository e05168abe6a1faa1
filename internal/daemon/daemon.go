// Package daemon runs the autoscaler for real: the reconciler on its interval
// and at once when a Job Hook reports a pending job, with the hook receiver,
// Prometheus metrics and a health check served over HTTP.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/reconcile"
)

// Stepper is one reconcile (reconcile.Reconciler).
type Stepper interface {
	Step(ctx context.Context) (reconcile.Report, error)
}

// Options configure a Daemon.
type Options struct {
	Reconciler Stepper
	// Interval is how often it reconciles when no hook wakes it.
	Interval time.Duration
	// Webhook, when set, is served at /hooks/gitlab and wakes the loop.
	Webhook *demand.Webhook
	// Save, when set, keeps what must outlive a restart (what the policy has
	// learned, the shutdowns under way); it is called after a reconcile at
	// most once a minute, and when Run ends.
	Save func() error
	// Learned, when set, is what the policy has learned, shown in /metrics
	// for Pools after each successful reconcile.
	Learned func() policy.State
	Pools   []string
	Clock   clock.Clock
	Logger  *slog.Logger
}

// Daemon is the autoscaler's loop.
type Daemon struct {
	o   Options
	reg *prometheus.Registry
	m   metrics

	mu      sync.Mutex
	lastOK  time.Time
	lastErr error

	savedAt time.Time // only the goroutine that steps uses it
}

type metrics struct {
	steps                        *prometheus.CounterVec
	droplets, pending            prometheus.Gauge
	shuttingDown, queueProblems  prometheus.Gauge
	created, drained, deleted    prometheus.Counter
	requests, problems, deferred prometheus.Counter
	stepSeconds                  prometheus.Histogram
	arrivals, boot               *prometheus.GaugeVec
}

// New returns a Daemon.
func New(o Options) (*Daemon, error) {
	if o.Reconciler == nil {
		return nil, errors.New("daemon: no reconciler")
	}
	if o.Interval <= 0 {
		return nil, errors.New("daemon: the reconcile interval must be positive")
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{o: o, reg: prometheus.NewRegistry()}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		d.reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		d.reg.MustRegister(g)
		return g
	}
	d.m = metrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shoal_reconcile_steps_total",
			Help: "Reconciles, by result (ok or error)."}, []string{"result"}),
		droplets: gauge("shoal_droplets", "Runner Droplets in the fleet at the last reconcile."),
		pending:  gauge("shoal_pending_jobs", "Pending jobs in the watched projects at the last reconcile."),
		shuttingDown: gauge("shoal_droplets_shutting_down",
			"Runner Droplets being shut down through DigitalOcean because their runners cannot be reached over SSH: check the firewall, ssh_keys and the runner host key."),
		queueProblems: gauge("shoal_job_queue_problems",
			"Problems reading the job queue at the last reconcile (projects left out or read earlier); the log says which."),
		created:     counter("shoal_droplets_created_total", "Runner Droplets created."),
		drained:     counter("shoal_runners_drained_total", "Runners told to take no new jobs."),
		deleted:     counter("shoal_droplets_deleted_total", "Runner Droplets deleted."),
		requests:    counter("shoal_digitalocean_requests_total", "DigitalOcean API requests made by reconciles."),
		problems:    counter("shoal_action_failures_total", "Actions that failed and are retried at the next reconcile."),
		deferred:    counter("shoal_actions_deferred_total", "Actions put off to stay inside the DigitalOcean rate budget."),
		stepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shoal_reconcile_seconds", Help: "Time one reconcile took.", Buckets: prometheus.DefBuckets}),
	}
	d.m.arrivals = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shoal_policy_arrivals_per_minute",
		Help: "Jobs arriving per minute, as the policy has learned it (decayed average), by pool."}, []string{"pool"})
	d.m.boot = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shoal_policy_boot_seconds",
		Help: "Seconds from a Droplet's create to its runner's registration, as the policy has learned it (90 until it has seen one), by pool."}, []string{"pool"})
	d.reg.MustRegister(d.m.steps, d.m.stepSeconds, d.m.arrivals, d.m.boot)
	if o.Webhook != nil {
		stat := func(f func(demand.WebhookStats) int64) func() float64 {
			return func() float64 { return float64(f(o.Webhook.Stats())) }
		}
		d.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shoal_job_hooks_received_total", Help: "Job Hooks accepted."},
				stat(func(s demand.WebhookStats) int64 { return s.Received })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shoal_job_hooks_rejected_total", Help: "Hooks refused (wrong secret token or body)."},
				stat(func(s demand.WebhookStats) int64 { return s.Rejected })))
	}
	return d, nil
}

// Handler serves /hooks/gitlab (when there is a webhook), /metrics and /healthz.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	if d.o.Webhook != nil {
		mux.Handle("/hooks/gitlab", d.o.Webhook)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := d.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Healthy reports an error unless a reconcile succeeded within the last three
// intervals (and a minute: one slow reconcile is no outage).
func (d *Daemon) Healthy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	what := "no successful reconcile yet"
	if !d.lastOK.IsZero() {
		since := d.o.Clock.Since(d.lastOK)
		if since <= 3*d.o.Interval+time.Minute {
			return nil
		}
		what = fmt.Sprintf("no successful reconcile for %s", since.Round(time.Second))
	}
	if d.lastErr != nil {
		return fmt.Errorf("%s; last error: %w", what, d.lastErr)
	}
	return errors.New(what)
}

// Step reconciles once, records the outcome and, once a minute, saves what
// must outlive a restart. A failed Step may still have acted (with GitLab
// unreadable for long, it drains the fleet).
func (d *Daemon) Step(ctx context.Context) (reconcile.Report, error) {
	rep, err := d.step(ctx)
	if err == nil {
		d.showLearned()
	}
	d.save(false)
	return rep, err
}

// showLearned puts what the policy has learned in the metrics.
func (d *Daemon) showLearned() {
	if d.o.Learned == nil {
		return
	}
	st := d.o.Learned()
	for _, pool := range d.o.Pools {
		if sp, ok := st.ShoalPool(pool); ok {
			d.m.arrivals.WithLabelValues(pool).Set(sp.ArrivalsPerMinute)
			d.m.boot.WithLabelValues(pool).Set(sp.Boot.Seconds())
		}
	}
}

// saveEvery is how often the policy's learned state is saved.
const saveEvery = time.Minute

// save calls Options.Save, at most once every saveEvery unless forced.
func (d *Daemon) save(force bool) {
	now := d.o.Clock.Now()
	if d.o.Save == nil || (!force && now.Sub(d.savedAt) < saveEvery) {
		return
	}
	d.savedAt = now
	if err := d.o.Save(); err != nil {
		d.o.Logger.Warn("cannot save state_dir's files; after a restart the policy would learn the day again, and shutdowns under way would start their limit again", "error", err)
	}
}

func (d *Daemon) step(ctx context.Context) (reconcile.Report, error) {
	start := d.o.Clock.Now()
	rep, err := d.o.Reconciler.Step(ctx)
	d.m.stepSeconds.Observe(d.o.Clock.Since(start).Seconds())
	d.m.requests.Add(float64(rep.Requests))
	d.m.created.Add(float64(len(rep.Created)))
	d.m.drained.Add(float64(len(rep.Drained)))
	d.m.deleted.Add(float64(len(rep.Deleted)))
	d.m.problems.Add(float64(len(rep.Problems)))
	d.m.deferred.Add(float64(len(rep.Deferred)))
	if err == nil || rep.Blind { // a blind Step saw the fleet, not the queue
		d.m.droplets.Set(float64(rep.Droplets - len(rep.Deleted) + len(rep.Created)))
		d.m.shuttingDown.Set(float64(rep.ShuttingDown))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.m.steps.WithLabelValues("error").Inc()
		d.lastErr = err
		return rep, err
	}
	d.m.steps.WithLabelValues("ok").Inc()
	d.lastOK, d.lastErr = d.o.Clock.Now(), nil
	d.m.pending.Set(float64(rep.Pending))
	d.m.queueProblems.Set(float64(rep.QueueProblems))
	return rep, nil
}

// hookGap is the least time between reconciles a Job Hook starts.
const hookGap = 2 * time.Second

// Run reconciles every interval, and at once when a Job Hook reports a
// pending job, until ctx ends. A failed reconcile is logged and retried at the
// next one: GitLab or DigitalOcean being down for a while must not stop it.
func (d *Daemon) Run(ctx context.Context) error {
	var wake <-chan struct{}
	if d.o.Webhook != nil {
		wake = d.o.Webhook.Pending()
	}
	tick := d.o.Clock.NewTicker(d.o.Interval)
	defer tick.Stop()
	defer d.save(true)
	for {
		began := d.o.Clock.Now()
		rep, err := d.Step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d.o.Logger.Error("reconcile failed; retrying at the next one", "error", err)
		}
		if len(rep.Created)+len(rep.Drained)+len(rep.Deleted) > 0 {
			d.o.Logger.Info("reconciled", "droplets", rep.Droplets, "pending_jobs", rep.Pending,
				"created", len(rep.Created), "drained", len(rep.Drained), "deleted", len(rep.Deleted),
				"do_requests", rep.Requests)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
		case <-wake:
			// A burst of hooks coalesces into at most one reconcile every
			// hookGap: each reads GitLab's whole queue.
			if wait := hookGap - d.o.Clock.Since(began); wait > 0 {
				if err := d.o.Clock.Sleep(ctx, wait); err != nil {
					return nil
				}
			}
		}
	}
}
