// Command shoal runs continuous deployment for GitLab CI/CD on DigitalOcean.
//
// This file wires the subcommands together and maps errors to exit codes;
// each subcommand lives in its own file and does its work in an internal package.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes: 0 success, 1 failure, 2 usage error.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error in how shoal was invoked (bad flag, missing argument),
// as opposed to a failure of the work itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes shoal with args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "shoal: %v\n", err)
	var ue usageError
	// cobra reports an unknown subcommand as a plain error; it is still a usage error.
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(stderr, "Run 'shoal --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "shoal",
		Short: "Continuous deployment for GitLab CI/CD on DigitalOcean",
		Long: `shoal runs continuous deployment for GitLab CI/CD on DigitalOcean:
an autoscaled fleet of GitLab runner Droplets, Django stacks deployed to Docker Swarm
over SSH, Block Storage volumes for stateful services, managed PostgreSQL credentials,
and GitLab Omnibus backups and upgrades.

Every command talks to the real DigitalOcean and GitLab APIs; 'shoal emulate' serves a
faithful emulator of both for offline work and testing.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(commands()...)
	return root
}

// subcommands register themselves here from their own files' init functions,
// so adding one touches only its file.
var subcommands []func() *cobra.Command

func commands() []*cobra.Command {
	cmds := make([]*cobra.Command, 0, len(subcommands))
	for _, mk := range subcommands {
		cmds = append(cmds, mk())
	}
	return cmds
}

// exactArgs is cobra.ExactArgs with a usage error, so a wrong argument count exits 2.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
