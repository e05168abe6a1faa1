package demand

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/tags"
	"github.com/shoalci/shoal/internal/trace"
)

// HistoryStats says what History read and what it left out.
type HistoryStats struct {
	Projects  int
	Pipelines int // in the trace
	Jobs      int // in the trace
	// Unfinished pipelines were still running or waiting when read; Empty
	// ones had no job that ran (all manual, skipped or canceled early).
	Unfinished, Empty int
	// Requests is the GitLab API requests made.
	Requests int
	// Start is the trace's time 0: the Monday 00:00 UTC on or before since.
	Start time.Time
}

// active are pipeline statuses with jobs still to run or running.
var active = map[string]bool{"created": true, "waiting_for_resource": true, "preparing": true, "pending": true, "running": true, "scheduled": true}

// History reads the pipelines of the watched projects created in [since,
// until) and their jobs that ran, as a trace in the format shoal sim replays,
// so that a policy can be measured on your own CI before it runs your fleet.
//
//   - The trace starts on the Monday 00:00 UTC on or before since, as the
//     format wants, so times of day and weekdays stay true.
//   - Stage k is the pipeline's k-th stage with a job that ran, in GitLab's
//     stage order (GitLab creates a pipeline's jobs stage by stage, so a
//     stage's lowest job ID orders it). Pipelines using needs: are replayed
//     stage by stage.
//   - A job's duration is GitLab's: from its start to its end. Jobs that
//     never started (manual, skipped, canceled before a runner took them) are
//     left out; a retried job counts once, its last attempt (GitLab's
//     listing).
//   - Pipelines still running or waiting are left out, and counted.
//
// It makes one request per 100 pipelines per project and one per pipeline.
// progress, if not nil, is called after each pipeline read.
func (s *Source) History(ctx context.Context, since, until time.Time, progress func(done, total int)) (*trace.Trace, HistoryStats, error) {
	st := HistoryStats{Start: mondayOf(since)}
	if !until.After(since) {
		return nil, st, fmt.Errorf("read history: the window is empty: %s is not after %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	projects, err := s.projects(ctx, s.clk.Now())
	if err != nil {
		return nil, st, err
	}
	st.Projects = len(projects)
	type found struct {
		project int64
		info    *gitlab.PipelineInfo
		at      time.Duration // since st.Start, to the tenth of a second the format keeps
	}
	var pipelines []found
	for _, pid := range projects {
		// GitLab's created_after is strict: ask from a second before. A
		// GitLab older than created_after ignores it, but has updated_after,
		// which a pipeline created in the window passes too.
		from := gitlab.Ptr(since.Add(-time.Second))
		opt := &gitlab.ListProjectPipelinesOptions{ListOptions: gitlab.ListOptions{PerPage: 100},
			CreatedAfter: from, UpdatedAfter: from, CreatedBefore: gitlab.Ptr(until), Sort: gitlab.Ptr("asc")}
		for {
			ps, resp, err := s.c.Pipelines.ListProjectPipelines(pid, opt, gitlab.WithContext(ctx))
			st.Requests++
			if err != nil {
				return nil, st, fmt.Errorf("list pipelines of project %d: %w", pid, hint(err))
			}
			for _, p := range ps {
				if p.CreatedAt != nil && !p.CreatedAt.Before(since) && p.CreatedAt.Before(until) {
					pipelines = append(pipelines, found{pid, p, p.CreatedAt.Sub(st.Start).Round(100 * time.Millisecond)})
				}
			}
			if resp.NextPage == 0 {
				break
			}
			opt.Page = resp.NextPage
		}
	}
	slices.SortFunc(pipelines, func(a, b found) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.info.ID, b.info.ID))
	})

	tr := &trace.Trace{}
	var jobID int64
	for i, f := range pipelines {
		if progress != nil {
			progress(i, len(pipelines))
		}
		if active[f.info.Status] {
			st.Unfinished++
			continue
		}
		jobs, err := s.pipelineJobs(ctx, f.project, f.info.ID, &st.Requests)
		if err != nil {
			return nil, st, err
		}
		stages := ranStages(jobs)
		if len(stages) == 0 {
			st.Empty++
			continue
		}
		p := trace.Pipeline{ID: f.info.ID, CreatedAt: f.at}
		for _, stage := range stages {
			var out []trace.Job
			for _, j := range stage {
				jobID++
				d := time.Duration(j.Duration * float64(time.Second))
				if d <= 0 && j.FinishedAt != nil {
					d = j.FinishedAt.Sub(*j.StartedAt)
				}
				out = append(out, trace.Job{ID: jobID, Duration: d, Tags: tags.Sorted(j.TagList)})
			}
			p.Stages = append(p.Stages, out)
			st.Jobs += len(out)
		}
		tr.Pipelines = append(tr.Pipelines, p)
	}
	if progress != nil {
		progress(len(pipelines), len(pipelines))
	}
	st.Pipelines = len(tr.Pipelines)
	return tr, st, nil
}

// pipelineJobs lists all of a pipeline's jobs, counting requests.
func (s *Source) pipelineJobs(ctx context.Context, project, pipeline int64, requests *int) ([]*gitlab.Job, error) {
	opt := &gitlab.ListJobsOptions{ListOptions: gitlab.ListOptions{PerPage: 100}}
	var all []*gitlab.Job
	for {
		jobs, resp, err := s.c.Jobs.ListPipelineJobs(project, pipeline, opt, gitlab.WithContext(ctx))
		*requests++
		if err != nil {
			return nil, fmt.Errorf("list jobs of pipeline %d of project %d: %w", pipeline, project, hint(err))
		}
		all = append(all, jobs...)
		if resp.NextPage == 0 {
			return all, nil
		}
		opt.Page = resp.NextPage
	}
}

// ranStages groups the jobs that ran (started and ended) by stage, stages in
// GitLab's order (by their lowest job ID) and jobs by ID within a stage.
func ranStages(jobs []*gitlab.Job) [][]*gitlab.Job {
	first := map[string]int64{} // stage → its lowest job ID, over every job
	for _, j := range jobs {
		if f, ok := first[j.Stage]; !ok || j.ID < f {
			first[j.Stage] = j.ID
		}
	}
	byStage := map[string][]*gitlab.Job{}
	for _, j := range jobs {
		if j.StartedAt != nil && j.FinishedAt != nil {
			byStage[j.Stage] = append(byStage[j.Stage], j)
		}
	}
	names := make([]string, 0, len(byStage))
	for name := range byStage {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(first[a], first[b]) })
	out := make([][]*gitlab.Job, len(names))
	for k, name := range names {
		out[k] = byStage[name]
		slices.SortFunc(out[k], func(a, b *gitlab.Job) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out
}

// mondayOf is the Monday 00:00 UTC on or before t.
func mondayOf(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
}
