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
		Short: "Return the stack to where it was before its last deploy",
		Long: `rollback uses Swarm's own service rollback on every service the last deploy
changed, under the stack's deploy lock, and waits until they run again.

Swarm keeps one previous spec per service, and after a rollback (a second 'shoal
rollback', or a failed deploy, which is rolled back) that spec is the newer version
left behind. When Swarm no longer has the version before the last deploy for every
service that deploy changed, rollback refuses and changes nothing, rather than go
forward or leave the stack mixed: deploy the version you want explicitly.`,
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
