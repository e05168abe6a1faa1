package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/trace"
)

func init() { subcommands = append(subcommands, newTraceCmd) }

func newTraceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Work with CI workload traces: export your own GitLab's for shoal sim",
		Args:  exactArgs(0),
	}
	cmd.AddCommand(newTraceExportCmd())
	return cmd
}

func newTraceExportCmd() *cobra.Command {
	var (
		url, since, until, out string
		projects, groups       []string
	)
	cmd := &cobra.Command{
		Use:   "export --project PATH [--group PATH] [--since 7d] [--out FILE]",
		Short: "Read the pipelines your projects ran and write them as a trace for shoal sim",
		Long: `Read the pipelines created in a time window in your GitLab projects, and the jobs of
theirs that ran, and write them as a CI workload trace (shared/traces/README.md), so that
'shoal sim --trace FILE --compare' measures shoal and GitLab Runner's autoscalers on your
own workload before either runs your fleet. Read-only: it needs a token with read_api in
GITLAB_TOKEN.

The trace starts on the Monday 00:00 UTC before the window, so times of day and weekdays
stay true. Stages keep GitLab's order; jobs that never started (manual, skipped) and
pipelines still running are left out. It makes one API request per pipeline.`,
		Example: `  GITLAB_TOKEN=glpat-… shoal trace export --project acme/api --group acme/web --since 7d --out mine.csv
  shoal sim --trace mine.csv --compare --report mine.html`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(projects) == 0 && len(groups) == 0 {
				return usagef("name at least one --project or --group to read")
			}
			token := os.Getenv("GITLAB_TOKEN")
			if token == "" {
				return usagef("set GITLAB_TOKEN to an access token with the read_api scope")
			}
			now := time.Now()
			from, err := parseWhen(since, now)
			if err != nil {
				return usagef("--since: %v", err)
			}
			to := now
			if until != "" {
				if to, err = parseWhen(until, now); err != nil {
					return usagef("--until: %v", err)
				}
			}
			c, err := gitlab.NewClient(token, gitlab.WithBaseURL(url))
			if err != nil {
				return fmt.Errorf("GitLab client for %s: %w", url, err)
			}
			src, err := demand.NewSource(c, demand.Config{Projects: projects, Groups: groups}, nil)
			if err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			tr, st, err := src.History(cmd.Context(), from, to, func(done, total int) {
				if done%100 == 0 || done == total {
					fmt.Fprintf(errw, "\rread %d of %d pipelines", done, total)
				}
			})
			fmt.Fprintln(errw)
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := trace.Write(&b, tr); err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b.Bytes())
			} else {
				err = os.WriteFile(out, b.Bytes(), 0o644)
			}
			if err != nil {
				return fmt.Errorf("write trace: %w", err)
			}
			projectsRead := fmt.Sprintf("%d projects", st.Projects)
			if st.Projects == 1 {
				projectsRead = "1 project"
			}
			fmt.Fprintf(errw, "%d pipelines, %d jobs from %s, created %s to %s (the trace starts %s).\n",
				st.Pipelines, st.Jobs, projectsRead, from.UTC().Format("Mon 2006-01-02 15:04"), to.UTC().Format("Mon 2006-01-02 15:04 UTC"),
				st.Start.Format("Mon 2006-01-02 15:04 UTC"))
			if st.Unfinished+st.Empty > 0 {
				fmt.Fprintf(errw, "Left out: %d still running, %d with no job that ran.\n", st.Unfinished, st.Empty)
			}
			if out != "" && out != "-" {
				fmt.Fprintf(errw, "Next: shoal sim --trace %s --compare --report %s.html\n", out, strings.TrimSuffix(out, ".csv"))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&url, "gitlab-url", firstNonEmpty(os.Getenv("GITLAB_URL"), os.Getenv("CI_SERVER_URL"), "https://gitlab.com"), "GitLab's URL (env GITLAB_URL or CI_SERVER_URL)")
	fl.StringArrayVar(&projects, "project", nil, "project ID or full path (repeatable)")
	fl.StringArrayVar(&groups, "group", nil, "group ID or full path: all its projects, subgroups included (repeatable)")
	fl.StringVar(&since, "since", "7d", "start of the window: a time ago (7d, 36h) or a date (2026-11-16, RFC 3339)")
	fl.StringVar(&until, "until", "", "end of the window, as --since (default: now)")
	fl.StringVarP(&out, "out", "o", "", "trace file to write (default: standard output)")
	return cmd
}

// parseWhen reads a moment: a time ago ("7d", "36h", "90m") or a date
// ("2026-11-16", UTC) or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a time ago (7d, 36h) nor a date (2026-11-16, 2026-11-16T09:00:00Z)", s)
}
