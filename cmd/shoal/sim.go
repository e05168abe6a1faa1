package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/sim"
	"github.com/shoalci/shoal/internal/trace"
)

func init() { subcommands = append(subcommands, newSimCmd) }

type simFlags struct {
	trace, config, policy, report, bootDelay, jobs string
	params                                         []string
	seed                                           uint64
	json, compare                                  bool
	short                                          bool // a short table, for the demo
	registerDelay                                  time.Duration
}

func newSimCmd() *cobra.Command {
	var f simFlags
	cmd := &cobra.Command{
		Use:   "sim --trace FILE",
		Short: "Replay a CI trace through an autoscaling policy in virtual time and measure wait and cost",
		Long: `Replay a CI workload trace (the CSV format of shared/traces/README.md) in virtual time
through shoal's real autoscaler: the policy, the reconciler, godo against the DigitalOcean
emulator and client-go against the GitLab emulator. It reports how long jobs waited for a
runner, how much pipelines slowed down, and what the Droplets cost according to the
emulator's billing ledger, against the lower bound of perfectly packed job time.

Policies: shoal (shoal's own), docker-machine and taskscaler (faithful models of GitLab
Runner's autoscalers), static (a fixed fleet). --compare runs shoal and every baseline over
a grid of its settings and shows which are on the frontier of wait and cost.

Without --config each distinct tag set of the trace gets a pool of s-2vcpu-4gb Droplets,
one job each, the same for every policy.`,
		Example: `  shoal sim --trace ../shared/traces/team-week.csv
  shoal sim --trace release-day.csv --policy docker-machine --param idle_count=2 --json
  shoal sim --trace nightly.csv --compare --report compare.html
  shoal sim --trace nightly.csv --jobs waits.csv`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.trace == "" {
				return usagef("--trace FILE is required (see shared/traces/README.md for the format)")
			}
			t, err := trace.ParseFile(f.trace)
			if err != nil {
				return err
			}
			return runSim(cmd, f, t, nil)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.trace, "trace", "", "trace file (CSV)")
	fl.StringVar(&f.config, "config", "", "pool config (TOML); default: one pool per tag set of the trace")
	fl.StringVar(&f.policy, "policy", "shoal", "policy: "+strings.Join(policy.Names(), ", "))
	fl.StringArrayVar(&f.params, "param", nil, "policy parameter NAME=VALUE (repeatable; durations in seconds)")
	fl.Uint64Var(&f.seed, "seed", 1, "seed: the same seed gives the same figures")
	fl.BoolVar(&f.json, "json", false, "print JSON instead of a table")
	fl.BoolVar(&f.compare, "compare", false, "run shoal and every baseline over its parameter grid")
	fl.StringVar(&f.report, "report", "", "write an HTML report with charts to this file")
	fl.StringVar(&f.jobs, "jobs", "", "write each job's wait to this CSV file (one policy only)")
	fl.StringVar(&f.bootDelay, "boot-delay", defaultBootDelay, "Droplet boot time: a duration or MIN-MAX")
	fl.DurationVar(&f.registerDelay, "register-delay", defaultRegisterDelay, "time from an active Droplet to its runner registering")
	return cmd
}

// runSim runs one policy, or the comparison, and prints the results. settings,
// when given, replaces --policy/--compare (the demo uses it).
func runSim(cmd *cobra.Command, f simFlags, t *trace.Trace, settings []sim.Setting) error {
	boot, err := parseRange(f.bootDelay)
	if err != nil {
		return usagef("--boot-delay: %v", err)
	}
	// A simulation is a batch job that allocates briskly and has memory to
	// spare: collecting garbage less often makes it about a quarter faster.
	debug.SetGCPercent(400)
	opts := sim.Options{Trace: t, Seed: f.seed, BootDelay: boot, RegisterDelay: f.registerDelay, KeepJobs: f.jobs != ""}
	if f.config != "" {
		if opts.Config, err = config.Load(f.config); err != nil {
			return err
		}
	}
	if settings == nil {
		params, err := parseParams(f.params)
		if err != nil {
			return err
		}
		settings = []sim.Setting{{Policy: f.policy, Params: params}}
		if f.compare {
			if len(f.params) > 0 || cmd.Flags().Changed("policy") || f.jobs != "" {
				return usagef("--compare runs every policy over its own grid: leave out --policy, --param and --jobs")
			}
			settings = sim.CompareSettings()
		}
		if _, err := policy.ByName(settings[0].Policy, settings[0].Params); err != nil {
			return usageError{err}
		}
	}
	if err := opts.Check(); err != nil {
		return err
	}
	errw := cmd.ErrOrStderr()
	results, err := sim.RunAll(cmd.Context(), opts, settings, func(done, total int, r sim.Result) {
		if f.compare { // progress goes to stderr, so JSON on stdout stays clean
			fmt.Fprintf(errw, "[%d/%d] %-40s p95 wait %5.0f s  cost $%.2f\n", done, total,
				sim.Setting{Policy: r.Policy, Params: r.Params}, r.WaitS.P95, r.CostUSD)
		}
	})
	if err != nil {
		return err
	}
	if f.jobs != "" && len(results) == 1 {
		if err := writeJobs(f.jobs, results[0].JobWaits); err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if len(results) == 1 && !f.compare {
			return enc.Encode(results[0])
		}
		return enc.Encode(results)
	}
	if f.short {
		printShort(out, results)
	} else {
		printResults(out, t, results, len(settings) > 1 && f.compare)
	}
	if f.report != "" {
		if err := writeReport(f.report, "shoal sim: "+t.Name, results, len(settings) > 1 && f.compare); err != nil {
			return err
		}
		fmt.Fprintf(out, "\nReport with charts: %s\n", f.report)
	}
	return nil
}

func printResults(w io.Writer, t *trace.Trace, rs []sim.Result, compare bool) {
	fmt.Fprintf(w, "trace %s: %d pipelines, %d jobs, %.1f job-hours\n\n", t.Name, len(t.Pipelines), t.Jobs(), t.JobTime().Hours())
	mark := map[int]string{}
	if compare {
		for _, i := range sim.Pareto(rs) {
			mark[i] = "pareto"
		}
	}
	sim.WriteTable(w, rs, mark)
	if !compare {
		return
	}
	fmt.Fprintln(w)
	for _, line := range sim.Findings(rs) {
		fmt.Fprintln(w, line)
	}
}

func writeReport(path, title string, rs []sim.Result, compare bool) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := sim.WriteReport(f, title, rs, compare); err != nil {
		f.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return f.Close()
}

// writeJobs writes one CSV row per trace job: its IDs, stage and tags, when
// it became pending (seconds; empty if it never did), how long it waited for
// its script to start (empty if it never started), and whether it finished.
func writeJobs(path string, jobs []sim.JobWait) error {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"job_id", "pipeline_id", "stage", "tags", "queued_s", "wait_s", "finished"})
	for _, j := range jobs {
		queued, wait := "", ""
		if j.BecamePending {
			queued = strconv.FormatFloat(j.Queued.Seconds(), 'f', 3, 64)
		}
		if j.Started {
			wait = strconv.FormatFloat(j.Wait.Seconds(), 'f', 3, 64)
		}
		_ = w.Write([]string{strconv.FormatInt(j.JobID, 10), strconv.FormatInt(j.PipelineID, 10), strconv.Itoa(j.Stage),
			strings.Join(j.Tags, ";"), queued, wait, strconv.FormatBool(j.Finished)})
	}
	w.Flush() // writes go to memory: no error but the file's
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write job waits: %w", err)
	}
	return nil
}

func parseParams(kvs []string) (policy.Params, error) {
	p := policy.Params{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil {
			return nil, usagef("--param %q: want NAME=NUMBER, e.g. idle_count=2", kv)
		}
		p[strings.TrimSpace(k)] = x
	}
	return p, nil
}

// A runner Droplet's start as DigitalOcean and gitlab-runner take it: the
// emulator's boot delay, then the runner's registration.
const (
	defaultBootDelay     = "45s-75s"
	defaultRegisterDelay = 20 * time.Second
)
