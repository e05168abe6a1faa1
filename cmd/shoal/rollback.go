package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalci/shoal/internal/deploy"
)

func init() { subcommands = append(subcommands, newRollbackCmd) }

func newRollbackCmd() *cobra.Command {
	var (
		sf       swarmFlags
		lockWait time.Duration
		reason   string
	)
	cmd := &cobra.Command{
		Use:   "rollback --host ssh://user@manager --stack NAME",
		Short: "Return the services the last deploy changed to their previous version",
		Long: `rollback uses Swarm's own service rollback on every service the last deploy
changed, under the stack's deploy lock, and waits until they run again. Swarm keeps one
previous spec per service: a second rollback goes forward again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sf.run(cmd.Context(), cmd.OutOrStdout(), func(d *deploy.Deployer) error {
				_, err := d.Rollback(cmd.Context(), sf.stack, deploy.RollbackOptions{Reason: firstNonEmpty(reason, "rollback by "+performer()), LockWait: lockWait})
				return err
			})
		},
	}
	sf.register(cmd)
	cmd.Flags().DurationVar(&lockWait, "lock-wait", 0, "wait this long for another deploy's lock instead of failing at once")
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown to whoever finds the lock held")
	return cmd
}
