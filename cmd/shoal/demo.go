package main

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/sim"
)

func init() { subcommands = append(subcommands, newDemoCmd) }

func newDemoCmd() *cobra.Command {
	var report string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Replay a release day through shoal's autoscaler and GitLab's docker+machine, offline",
		Long: `Run the emulated DigitalOcean and GitLab in-process, replay a bundled one-day CI trace
with a release burst (150 release pipelines in 45 minutes on top of a normal day) in virtual
time, once through shoal's autoscaling policy and once through a faithful model of GitLab
Runner's docker+machine autoscaler, and compare how long jobs waited and what the Droplets
cost. Writes an HTML report with charts. Needs no account, no token and no network.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := sim.DemoTrace()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Replaying a release day (%d pipelines, %d jobs) through shoal and GitLab's\ndocker+machine, in virtual time...\n\n", len(t.Pipelines), t.Jobs())
			f := simFlags{seed: 1, bootDelay: defaultBootDelay, registerDelay: defaultRegisterDelay, report: report, short: true}
			settings := []sim.Setting{{Policy: "shoal", Params: policy.Params{}}, {Policy: "docker-machine", Params: policy.Params{}}}
			if err := runSim(cmd, f, t, settings); err != nil {
				return err
			}
			fmt.Fprintln(out, "\nNext: `shoal sim --trace FILE --compare` runs every baseline over its settings;\n`shoal emulate` serves the DigitalOcean emulator for your own tools.")
			return nil
		},
	}
	cmd.Flags().StringVar(&report, "report", "shoal-demo.html", "where to write the HTML report")
	return cmd
}

// printShort prints the figures that matter, narrow enough for a terminal,
// and what they mean for shoal (rs[0]) against the second run.
func printShort(w io.Writer, rs []sim.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\twait p50 s\tmean s\tp95 s\tcost $\t× lower bound\tDroplets\t429s\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%d\t%d\t\n", sim.Setting{Policy: r.Policy, Params: r.Params},
			r.WaitS.P50, r.WaitS.Mean, r.WaitS.P95, r.CostUSD, r.CostRatio, r.DropletsCreated, r.RateLimitedResponses)
	}
	tw.Flush()
	if len(rs) < 2 {
		return
	}
	s, b := rs[0], rs[1]
	fmt.Fprintf(w, "\nAgainst %s, shoal's mean wait for a runner is %s,\nits p95 wait %s and its cost %s.\n",
		b.Policy, change(s.WaitS.Mean, b.WaitS.Mean), change(s.WaitS.P95, b.WaitS.P95), change(s.CostUSD, b.CostUSD))
}

// change says how a compares with b, in percent of b: "39% lower".
func change(a, b float64) string {
	switch {
	case math.Abs(a-b) <= b/200: // within half a percent, or both zero
		return "about the same"
	case b == 0:
		return "higher"
	case a < b:
		return fmt.Sprintf("%.0f%% lower", 100*(b-a)/b)
	default:
		return fmt.Sprintf("%.0f%% higher", 100*(a-b)/b)
	}
}
