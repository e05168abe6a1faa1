package main

import (
	"github.com/spf13/cobra"

	"github.com/shoalci/shoal/internal/deploy"
)

func init() { subcommands = append(subcommands, newStatusCmd) }

func newStatusCmd() *cobra.Command {
	var sf swarmFlags
	cmd := &cobra.Command{
		Use:   "status --host ssh://user@manager --stack NAME",
		Short: "Show a stack's services, replicas, images, update state and last deploy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sf.run(cmd.Context(), cmd.ErrOrStderr(), func(d *deploy.Deployer) error {
				st, err := d.Status(cmd.Context(), sf.stack)
				if err != nil {
					return err
				}
				st.Print(cmd.OutOrStdout())
				return nil
			})
		},
	}
	sf.register(cmd)
	return cmd
}
