package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
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
			if err := sfStatus.check(); err != nil {
				return err
			}
			d, closeConn, err := sfStatus.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeConn()
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
		},
	}
	release := &cobra.Command{
		Use:   "release --host ssh://user@manager --stack NAME",
		Short: "Remove the stack's deploy lock (only when its deploy is dead)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sfRelease.check(); err != nil {
				return err
			}
			d, closeConn, err := sfRelease.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeConn()
			if err := d.ReleaseLock(cmd.Context(), sfRelease.stack); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stack %s is unlocked\n", sfRelease.stack)
			return nil
		},
	}
	sfStatus.register(status)
	sfRelease.register(release)
	cmd.AddCommand(status, release)
	return cmd
}
