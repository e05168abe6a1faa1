package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/daemon"
	"github.com/shoalci/shoal/internal/runnerhost"
)

func init() { subcommands = append(subcommands, newAutoscaleCmd) }

func newAutoscaleCmd() *cobra.Command {
	var (
		cfgPath, listen         string
		once, check, newHostKey bool
	)
	cmd := &cobra.Command{
		Use:   "autoscale",
		Short: "Run the runner autoscaler: keep each pool's Droplets sized to GitLab's job queue",
		Long: `Run the autoscaler against GitLab and DigitalOcean: every reconcile_interval, and at
once when a Job Hook reports a pending job, it reads the job queue and the stages to come,
asks shoal's policy what to do, and creates, drains and deletes runner Droplets within
DigitalOcean's rate limits. A runner is stopped over SSH before its Droplet is deleted, so
no job is cut off. The fleet lives in Droplet tags: a restarted autoscaler adopts it.

Each pool's Droplets run a manager of one GitLab runner (pool.runner_id), with that runner's
authentication token, which their cloud-init installs. Secrets come from the environment:
  DIGITALOCEAN_ACCESS_TOKEN (or DIGITALOCEAN_TOKEN)  DigitalOcean API token
  GITLAB_TOKEN                 GitLab token that can read the projects' jobs and the runners
  SHOAL_RUNNER_TOKEN_<POOL>    each pool's glrt- token (or the pool's runner_token_env)
  SHOAL_WEBHOOK_SECRET         optional: the secret token of a GitLab Job Hook webhook
                               pointed at http://<listen>/hooks/gitlab
  DIGITALOCEAN_API_URL         optional: another DigitalOcean API (shoal emulate)

It serves /hooks/gitlab, /metrics (Prometheus) and /healthz on [daemon] listen.
See docs/autoscaling.md for the configuration file.`,
		Example: `  shoal autoscale --config shoal.toml --check   # is everything in place? changes nothing
  shoal autoscale --config shoal.toml --once    # one reconcile, printing each decision
  shoal autoscale --config /etc/shoal/shoal.toml`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return usagef("--config is required: the pools, [gitlab] and [daemon] (see docs/autoscaling.md)")
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Daemon.Listen = listen
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			setup, err := autoscaleSetup(cfg, cfgPath, log)
			if err != nil {
				return err
			}
			if check {
				findings, err := daemon.Check(cmd.Context(), setup)
				if err != nil {
					return err
				}
				problems := 0
				for _, f := range findings {
					mark := "ok  "
					if !f.OK {
						mark = "FAIL"
						problems++
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", mark, f.Text)
				}
				if problems > 0 {
					return fmt.Errorf("%d of %d checks failed: fix them, then run --check again", problems, len(findings))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "All %d checks passed: `shoal autoscale --config %s` can run.\n", len(findings), cfgPath)
				return nil
			}
			if err := prepareState(cmd.Context(), &setup, newHostKey, log); err != nil {
				return err
			}
			d, err := daemon.Build(setup)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if once {
				rep, err := d.Step(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d Droplets, %d pending jobs: %d created, %d drained, %d deleted, %d DigitalOcean requests\n",
					rep.Droplets, rep.Pending, len(rep.Created), len(rep.Drained), len(rep.Deleted), rep.Requests)
				for _, dec := range rep.Decisions {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", dec)
				}
				return errors.Join(rep.Problems...)
			}
			return serveAutoscaler(ctx, d, cfg.Daemon.Listen, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "autoscaler config (TOML): pools, [gitlab], [daemon]")
	f.StringVar(&listen, "listen", "", "address for /hooks/gitlab, /metrics and /healthz (default: [daemon] listen, "+config.DefaultListen+")")
	f.BoolVar(&once, "once", false, "reconcile once, print what was done, and exit")
	f.BoolVar(&check, "check", false, "check the setup against DigitalOcean and GitLab, changing nothing, and exit")
	f.BoolVar(&newHostKey, "new-host-key", false, "make a new runner host key though runner Droplets exist (state_dir lost its key): they are then shut down through DigitalOcean when retired")
	cmd.MarkFlagsMutuallyExclusive("once", "check")
	return cmd
}

// autoscaleSetup gathers the secrets and keys the file points at.
func autoscaleSetup(cfg *config.Config, path string, log *slog.Logger) (daemon.Setup, error) {
	s := daemon.Setup{Config: cfg, File: path, Logger: log, RunnerTokens: map[string]string{},
		GitLabToken:   strings.TrimSpace(os.Getenv("GITLAB_TOKEN")),
		WebhookSecret: os.Getenv("SHOAL_WEBHOOK_SECRET"),
		DOAPIURL:      os.Getenv("DIGITALOCEAN_API_URL")}
	if err := cfg.DaemonReady(path); err != nil {
		return s, err
	}
	var err error
	if s.DOToken, err = cloud.TokenFromEnv(); err != nil {
		return s, err
	}
	if s.GitLabToken == "" {
		return s, errors.New("GITLAB_TOKEN is not set: create a token that can read the projects' jobs and the pools' runners (read_api; an administrator's for instance runners) and export it")
	}
	for _, p := range cfg.Pools {
		s.RunnerTokens[p.Name] = strings.TrimSpace(os.Getenv(p.TokenEnv()))
	}
	key, err := os.ReadFile(cfg.Daemon.SSHIdentity)
	if err != nil {
		return s, fmt.Errorf("daemon.ssh_identity: %w", err)
	}
	if s.SSHSigner, err = ssh.ParsePrivateKey(key); err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return s, fmt.Errorf("daemon.ssh_identity %s is encrypted: give shoal a key without a passphrase, readable only by its user", cfg.Daemon.SSHIdentity)
		}
		return s, fmt.Errorf("daemon.ssh_identity %s: %w", cfg.Daemon.SSHIdentity, err)
	}
	return s, nil
}

// prepareState makes the state directory, and the runner host key in it on
// the first start, for a daemon that runs (not for --check). A new key while
// runner Droplets exist is refused unless newHostKey says so: they trust the
// key they were booted with, and a lost key file is better restored.
func prepareState(ctx context.Context, s *daemon.Setup, newHostKey bool, log *slog.Logger) error {
	cfg := s.Config
	if err := os.MkdirAll(cfg.Daemon.StateDir, 0o700); err != nil {
		return fmt.Errorf("daemon.state_dir: %w (set [daemon] state_dir to a directory shoal's user may write)", err)
	}
	hostKey := filepath.Join(cfg.Daemon.StateDir, daemon.HostKeyFile)
	if _, err := os.Stat(hostKey); errors.Is(err, fs.ErrNotExist) && !newHostKey {
		ds, err := s.FleetDroplets(ctx)
		if err != nil {
			return fmt.Errorf("%s is missing; before making a new one shoal looks for runner Droplets that trust the old one: %w", hostKey, err)
		}
		if len(ds) > 0 {
			return fmt.Errorf("%s is missing, but %d runner Droplets exist (%s…): they trust the host key they were booted with, so with a new one shoal could not drain them over SSH and would shut them down through DigitalOcean instead. "+
				"Restore the file from a backup of state_dir, or run once with --new-host-key to accept that", hostKey, len(ds), ds[0].Name)
		}
	}
	var created bool
	var err error
	if s.HostKey, created, err = runnerhost.LoadHostKey(hostKey); err != nil {
		return err
	}
	if created {
		log.Warn("made a new SSH host key for runner Droplets; Droplets made with an earlier key cannot be drained over SSH, so when they are retired they are shut down gracefully through DigitalOcean instead (restore the old file, if there was one, to avoid that)", "path", hostKey)
	}
	return nil
}

// serveAutoscaler runs the loop and its HTTP endpoints until ctx ends.
func serveAutoscaler(ctx context.Context, d *daemon.Daemon, listen string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set [daemon] listen or --listen)", listen, err)
	}
	// Bounded reads and idle connections: a slow or idle client holds nothing for good.
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", "error", err)
		}
	}()
	log.Info("autoscaler running", "listen", ln.Addr().String())
	err = d.Run(ctx)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	log.Info("autoscaler stopped; the fleet stays as it is and the next start adopts it")
	return err
}
