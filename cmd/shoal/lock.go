package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalci/shoal/internal/deploy"
)

func init() { subcommands = append(subcommands, newLockCmd) }

func newLockCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Show or release a stack's deploy lock",
	}
	var sfStatus, sfRelease swarmFlags
	status := &cobra.Command{
		Use:   "status --host ssh://user@manager --stack NAME",
		Short: "Show who holds the stack's deploy lock",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sfStatus.run(cmd.Context(), cmd.ErrOrStderr(), func(d *deploy.Deployer) error {
				l, err := d.LockStatus(cmd.Context(), sfStatus.stack)
				if err != nil {
					return err
				}
				if l == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "stack %s is not locked\n", sfStatus.stack)
					return nil
				}
				stale := ""
				if l.Stale(time.Now()) {
					stale = " (stale: older than its TTL, the next deploy takes it over)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "stack %s is locked by %s since %s: %s%s\n", l.Stack, l.Owner, l.Since.UTC().Format(time.RFC3339), l.Reason, stale)
				return nil
			})
		},
	}
	release := &cobra.Command{
		Use:   "release --host ssh://user@manager --stack NAME",
		Short: "Remove the stack's deploy lock (only when its deploy is dead)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sfRelease.run(cmd.Context(), cmd.ErrOrStderr(), func(d *deploy.Deployer) error {
				if err := d.ReleaseLock(cmd.Context(), sfRelease.stack); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "stack %s is unlocked\n", sfRelease.stack)
				return nil
			})
		},
	}
	sfStatus.register(status)
	sfRelease.register(release)
	cmd.AddCommand(status, release)
	return cmd
}
