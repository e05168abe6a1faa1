package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"
	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/reconcile"
	"github.com/shoalci/shoal/internal/runnerhost"
)

// Setup is everything the daemon is made from: the file, and the secrets
// that stay out of it.
type Setup struct {
	Config *config.Config
	// File names the configuration in messages.
	File string
	// DOToken and GitLabToken are the API tokens; WebhookSecret, when set,
	// turns on the Job Hook receiver.
	DOToken, GitLabToken, WebhookSecret string
	// RunnerTokens are the pools' runner authentication tokens, by pool name.
	RunnerTokens map[string]string
	// SSHSigner is shoal's key on the runner Droplets; HostKey theirs.
	SSHSigner ssh.Signer
	HostKey   *runnerhost.HostKey
	// DOAPIURL points at another DigitalOcean API (`shoal emulate`); empty
	// means DigitalOcean's.
	DOAPIURL string
	// HTTPClient carries GitLab and DigitalOcean requests (nil: the default).
	HTTPClient *http.Client
	// Dial reaches runner Droplets over SSH (nil: the network).
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Clock  clock.Clock
	Logger *slog.Logger
}

// digitalOcean is the DigitalOcean client.
func (s Setup) digitalOcean() (*cloud.DO, error) {
	return cloud.New(cloud.Config{Token: s.DOToken, APIURL: s.DOAPIURL, HTTPClient: s.HTTPClient, Clock: s.Clock})
}

// clients are the DigitalOcean and GitLab clients, and the demand source.
func (s Setup) clients() (*cloud.DO, *gitlab.Client, *demand.Source, error) {
	cfg := s.Config
	do, err := s.digitalOcean()
	if err != nil {
		return nil, nil, nil, err
	}
	opts := []gitlab.ClientOptionFunc{gitlab.WithBaseURL(strings.TrimSuffix(cfg.GitLab.URL, "/") + "/api/v4")}
	hc := s.HTTPClient
	if hc == nil {
		// client-go's default client has no timeout: a GitLab that accepts
		// a request and never answers would hold every reconcile.
		hc = &http.Client{Timeout: cloud.RequestTimeout}
	}
	// A 429 is not retried at once: GitLab's job-list limit is per minute,
	// and the demand source reuses its last reads until Retry-After.
	opts = append(opts, gitlab.WithHTTPClient(hc), gitlab.WithCustomRetry(demand.RetryPolicy))
	gl, err := gitlab.NewClient(s.GitLabToken, opts...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("GitLab client for %s: %w", cfg.GitLab.URL, err)
	}
	runnerIDs := make([]int64, len(cfg.Pools))
	for i, p := range cfg.Pools {
		runnerIDs[i] = int64(p.RunnerID)
	}
	src, err := demand.NewSource(gl, demand.Config{Projects: cfg.GitLab.Projects, Groups: cfg.GitLab.Groups, JobsPerMinute: cfg.GitLab.JobsAPIPerMinute,
		RunnerIDs: runnerIDs, MaxPending: demand.PendingCap(cfg.Pools)}, s.Clock)
	if err != nil {
		return nil, nil, nil, err
	}
	return do, gl, src, nil
}

// FleetDroplets lists the runner Droplets shoal made (tagged shoal, named
// shoal-…), of any pool.
func (s Setup) FleetDroplets(ctx context.Context) ([]cloud.Droplet, error) {
	do, err := s.digitalOcean()
	if err != nil {
		return nil, err
	}
	ds, err := do.ListDroplets(ctx, reconcile.FleetTag)
	if err != nil {
		return nil, fmt.Errorf("list runner Droplets: %w", err)
	}
	return slices.DeleteFunc(ds, func(d cloud.Droplet) bool { return !strings.HasPrefix(d.Name, "shoal-") }), nil
}

// Build wires the real autoscaler: godo for DigitalOcean, client-go for
// GitLab, runnerhost for the runners, shoal's policy, and the reconciler.
func Build(s Setup) (*Daemon, error) {
	cfg := s.Config
	if err := cfg.DaemonReady(s.File); err != nil {
		return nil, err
	}
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	var missing []string
	userData := map[string]string{}
	for _, p := range cfg.Pools {
		tok := s.RunnerTokens[p.Name]
		if tok == "" {
			missing = append(missing, fmt.Sprintf("$%s (pool %s)", p.TokenEnv(), p.Name))
			continue
		}
		ud, err := runnerhost.UserData(s.HostKey, runnerhost.RunnerSpec{GitLabURL: cfg.GitLab.URL, Token: tok,
			Concurrent: p.CapacityPerInstance, Name: p.Name})
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", p.Name, err)
		}
		userData[p.Name] = ud
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no runner authentication token in %s: create the runner in GitLab (Settings > CI/CD > Runners) and export its glrt- token", strings.Join(missing, ", "))
	}

	do, _, src, err := s.clients()
	if err != nil {
		return nil, err
	}
	hosts, err := runnerhost.New(runnerhost.Config{Signer: s.SSHSigner, HostKey: s.HostKey,
		PrivateNetwork: cfg.Daemon.PrivateNetwork, Dial: s.Dial, Clock: s.Clock, Logger: s.Logger})
	if err != nil {
		return nil, err
	}
	// What the policy learns (the arrival rate, the time of day) is kept
	// across restarts in state_dir.
	stateFile := filepath.Join(cfg.Daemon.StateDir, PolicyStateFile)
	// So is when the graceful shutdowns of unreachable runners' Droplets
	// began: their limit holds across restarts.
	shutdownsFile := filepath.Join(cfg.Daemon.StateDir, ShutdownsFile)
	rec := reconcile.New(do, src, hosts, policy.NewShoal(), s.Clock, reconcile.Config{
		Pools: cfg.Pools, Billing: cfg.Billing,
		RequestsPerMinute: cfg.RequestsPerMinute(), RequestsPerHour: cfg.RequestsPerHour(),
		SSHKeys: cfg.Daemon.SSHKeys, ShutdownLimit: cfg.Daemon.ShutdownLimit, BlindLimit: cfg.GitLab.UnreadableLimit,
		UserData:  func(p config.Pool, _ string) string { return userData[p.Name] },
		State:     loadState[policy.State](stateFile, "what the policy learned (arrival rate, time of day)", s.Logger),
		Shutdowns: loadState[map[int]reconcile.Shutdown](shutdownsFile, "the graceful shutdowns begun", s.Logger),
		Logger:    s.Logger,
	})
	var hook *demand.Webhook
	if s.WebhookSecret != "" {
		if hook, err = demand.NewWebhook(s.WebhookSecret, s.Logger); err != nil {
			return nil, err
		}
		// Hooks of projects shoal does not watch wake nothing; a watched
		// one's project is read first at the next reconcile.
		hook.Watch(src.Touch)
	}
	pools := make([]string, len(cfg.Pools))
	for i, p := range cfg.Pools {
		pools[i] = p.Name
	}
	return New(Options{Reconciler: rec, Interval: cfg.ReconcileInterval, Webhook: hook,
		Save: func() error {
			return errors.Join(saveState(stateFile, rec.State()), saveState(shutdownsFile, rec.Shutdowns()))
		},
		Learned: rec.State, Pools: pools, Clock: s.Clock, Logger: s.Logger})
}
