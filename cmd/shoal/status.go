package main

import (
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newStatusCmd) }

func newStatusCmd() *cobra.Command {
	var sf swarmFlags
	cmd := &cobra.Command{
		Use:   "status --host ssh://user@manager --stack NAME",
		Short: "Show a stack's services, replicas, images, update state and last deploy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sf.check(); err != nil {
				return err
			}
			d, closeConn, err := sf.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeConn()
			st, err := d.Status(cmd.Context(), sf.stack)
			if err != nil {
				return err
			}
			st.Print(cmd.OutOrStdout())
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}
