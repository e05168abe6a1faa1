package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/glemu"
)

func init() { subcommands = append(subcommands, newEmulateCmd) }

func newEmulateCmd() *cobra.Command {
	var (
		listen, token, bootDelay, seedFile, billing string
		perMinute, perHour, dropletLimit            int
		seed                                        uint64
		withGitLab                                  bool
	)
	cmd := &cobra.Command{
		Use:   "emulate",
		Short: "Serve an emulator of DigitalOcean's API for offline work and tests",
		Long: `Serve an emulator of the parts of DigitalOcean's API v2 that shoal uses: Droplets and
their actions, Block Storage volumes, SSH keys, managed databases, account, balance
(from a billing ledger), with DigitalOcean's paths, JSON, errors and rate limits, and
each Droplet's metadata service. Nothing leaves this machine and nothing is billed.

Point any godo program or doctl at it with the URL and token it prints.`,
		Example: `  shoal emulate
  shoal emulate --listen 127.0.0.1:9000 --boot-delay 5s
  shoal emulate --seed-file databases.json --billing hourly`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			delay, err := parseRange(bootDelay)
			if err != nil {
				return usagef("--boot-delay: %v", err)
			}
			model := config.BillingModel(billing)
			if !model.Valid() {
				return usagef("--billing must be per-second or hourly, not %q", billing)
			}
			opts := doemu.Options{BootDelay: delay, RateLimitPerMinute: perMinute, RateLimitPerHour: perHour,
				DropletLimit: dropletLimit, Billing: model, Seed: seed}
			if seedFile != "" {
				s, err := doemu.LoadSeed(seedFile)
				if err != nil {
					return err
				}
				opts.Databases = s.Databases
			}
			given := token != ""
			if !given {
				token = doemu.NewToken()
			}
			opts.Tokens = []string{token}
			emu, err := doemu.New(opts)
			if err != nil {
				return err
			}
			var h http.Handler = emu
			gitlabToken := ""
			if withGitLab {
				gitlabToken = "glpat-" + strings.TrimPrefix(doemu.NewToken(), "dop_v1_")[:20]
				gl := glemu.New(glemu.Options{Tokens: []string{gitlabToken}})
				if _, err := gl.AddProject("app", 0); err != nil {
					return err
				}
				mux := http.NewServeMux()
				mux.Handle("/api/v4/", gl)
				mux.Handle("/", emu)
				h = mux
			}
			return serveEmulator(cmd.Context(), cmd, h, listen, token, given, gitlabToken)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "address to serve on")
	f.StringVar(&token, "token", "", "API token to accept (default: a new random one, printed)")
	f.StringVar(&bootDelay, "boot-delay", defaultBootDelay, "how long a new Droplet takes to become active: a duration, or MIN-MAX drawn uniformly")
	f.StringVar(&seedFile, "seed-file", "", "JSON file of managed databases to start with ({\"databases\": [...]})")
	f.StringVar(&billing, "billing", "per-second", "billing model: per-second (60 s minimum) or hourly")
	f.IntVar(&perMinute, "rate-limit-per-minute", 250, "requests per minute per token before 429 (negative: no limit)")
	f.IntVar(&perHour, "rate-limit-per-hour", 5000, "requests per hour per token before 429 (negative: no limit)")
	f.IntVar(&dropletLimit, "droplet-limit", 500, "the account's Droplet limit")
	f.Uint64Var(&seed, "seed", 0, "seed for boot delays, IDs and addresses")
	f.BoolVar(&withGitLab, "gitlab", false, "also serve the GitLab API emulator (REST v4 subset: projects, groups, jobs, pipelines, runner managers) under /api/v4")
	return cmd
}

// parseRange reads "30s" or "45s-75s".
func parseRange(s string) (doemu.Range, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	min, err := time.ParseDuration(strings.TrimSpace(lo))
	if err != nil {
		return doemu.Range{}, fmt.Errorf("%q is not a duration such as 30s or a range such as 45s-75s", s)
	}
	max := min
	if isRange {
		if max, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil || max < min {
			return doemu.Range{}, fmt.Errorf("%q is not a range such as 45s-75s", s)
		}
	}
	if min < 0 {
		return doemu.Range{}, fmt.Errorf("%q is negative", s)
	}
	if min == 0 && max == 0 {
		max = time.Nanosecond // doemu reads a zero range as "use the default"
	}
	return doemu.Range{Min: min, Max: max}, nil
}

func serveEmulator(ctx context.Context, cmd *cobra.Command, h http.Handler, listen, token string, given bool, gitlabToken string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another emulator running? try --listen 127.0.0.1:0)", listen, err)
	}
	url := "http://" + ln.Addr().String()
	shown := token
	if given {
		shown = "<the token given with --token>"
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, `DigitalOcean API emulator serving on %[1]s (Ctrl-C to stop)

Point a client at it:
  export DIGITALOCEAN_ACCESS_TOKEN=%[2]s
  export DIGITALOCEAN_API_URL=%[1]s
  doctl --api-url %[1]s compute droplet list
  curl -H "Authorization: Bearer $DIGITALOCEAN_ACCESS_TOKEN" %[1]s/v2/account

A Droplet's metadata service: %[1]s/metadata/v1/ with ?droplet_id=ID
(for go-metadata: metadata.WithBaseURL of %[1]s/?droplet_id=ID)
`, url, shown)
	if gitlabToken != "" {
		fmt.Fprintf(out, `
GitLab API emulator (read-only over HTTP; project 1 is "app"):
  export CI_API_V4_URL=%[1]s/api/v4
  export GITLAB_TOKEN=%[2]s
  curl -H "PRIVATE-TOKEN: $GITLAB_TOKEN" "$CI_API_V4_URL/projects/1/jobs?scope[]=pending"
`, url, gitlabToken)
	}

	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down: %w", err)
	}
	fmt.Fprintln(out, "emulator stopped")
	return nil
}
