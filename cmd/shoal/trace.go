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

The window is by default the last whole week, Monday 00:00 to Monday 00:00 UTC, the shape of
the traces in shared/traces. The trace starts on the Monday 00:00 UTC on or before the
window, so times of day and weekdays stay true. Stages keep GitLab's order; a retried job
lasts all its attempts; child pipelines count as pipelines; jobs that never started
(manual, skipped) and pipelines still running are left out. It reads the jobs of four
pipelines at a time, one request each: a week of 1,000 pipelines takes about a minute.`,
		Example: `  GITLAB_TOKEN=glpat-… shoal trace export --project acme/api --group acme/web --out mine.csv
  shoal trace export --group acme --since 2026-11-02 --until 2026-11-16 --out two-weeks.csv
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
			from, to, err := window(since, until, time.Now())
			if err != nil {
				return usageError{err}
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
				if done > 0 && (done%200 == 0 || done == total) {
					fmt.Fprintf(errw, "read %d of %d pipelines\n", done, total)
				}
			})
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
			if st.ChildrenViaBridges {
				fmt.Fprintln(errw, "This GitLab is older than 17.0 and does not list child pipelines: they were found through their parents' trigger jobs.")
			}
			if len(st.Refused) > 0 {
				fmt.Fprintf(errw, "Left out: projects %v, which refused to list pipelines (CI/CD turned off, or the token lacks access).\n", st.Refused)
			}
			if gap := from.Sub(st.Start); gap >= 24*time.Hour {
				fmt.Fprintf(errw, "The window starts %.0f days after the trace's Monday: shoal sim replays those quiet days too.\n", gap.Hours()/24)
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
	fl.StringVar(&since, "since", "", "start of the window: a time ago (7d, 36h), a date (2026-11-16, UTC) or an RFC 3339 time (default: the last whole week's Monday)")
	fl.StringVar(&until, "until", "", "end of the window, as --since (default: now, or with no --since the last Monday 00:00 UTC); alone, the window is the week before it")
	fl.StringVarP(&out, "out", "o", "", "trace file to write (default: standard output)")
	return cmd
}

// window is the export's [from, to): the last whole week, Monday to Monday
// UTC, unless since or until say otherwise.
func window(since, until string, now time.Time) (from, to time.Time, err error) {
	monday := trace.WeekStart(now)
	from, to = monday.AddDate(0, 0, -7), monday
	if since != "" {
		if from, err = parseWhen(since, now); err != nil {
			return from, to, fmt.Errorf("--since: %w", err)
		}
		to = now
	}
	if until != "" {
		if to, err = parseWhen(until, now); err != nil {
			return from, to, fmt.Errorf("--until: %w", err)
		}
		if since == "" {
			from = to.AddDate(0, 0, -7) // the week before
		}
	}
	if !to.After(from) {
		end := "now"
		if until != "" {
			end = "--until " + to.Format(time.RFC3339)
		}
		return from, to, fmt.Errorf("--since %s is not before %s: the window is empty", from.Format(time.RFC3339), end)
	}
	return from, to, nil
}

// parseWhen reads a moment: a time ago ("7d", "36h", "90m") or a date
// ("2026-11-16", UTC) or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && !strings.HasPrefix(days, "+") {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 && !strings.HasPrefix(s, "+") {
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
