package main

import (
	"github.com/spf13/cobra"

	"github.com/shoalci/shoal/internal/deploy"
)

func init() { subcommands = append(subcommands, newLogsCmd) }

func newLogsCmd() *cobra.Command {
	var (
		sf swarmFlags
		o  deploy.LogsOptions
	)
	cmd := &cobra.Command{
		Use:   "logs --host ssh://user@manager --stack NAME SERVICE",
		Short: "Print (or follow) the logs of a stack's service, all its tasks",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sf.run(cmd.Context(), cmd.ErrOrStderr(), func(d *deploy.Deployer) error {
				return d.Logs(cmd.Context(), sf.stack, args[0], o, cmd.OutOrStdout())
			})
		},
	}
	sf.register(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&o.Follow, "follow", "F", false, "keep printing new lines")
	fl.StringVarP(&o.Tail, "tail", "n", "100", "lines per task from the end (\"all\" for everything)")
	fl.StringVar(&o.Since, "since", "", "only lines since a time (RFC 3339) or a duration ago (10m)")
	fl.BoolVarP(&o.Timestamps, "timestamps", "t", false, "prefix lines with their time")
	return cmd
}
