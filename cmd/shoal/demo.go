package main

import (
	"fmt"

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
			fmt.Fprintf(out, "Replaying %s through shoal and docker+machine in virtual time...\n\n", t.Name)
			f := simFlags{seed: 1, bootDelay: defaultBootDelay, registerDelay: defaultRegisterDelay, report: report}
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
