package demand

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"
	"golang.org/x/sync/errgroup"

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
	// Refused are projects whose pipelines GitLab would not list (403: CI/CD
	// turned off, or no access): left out.
	Refused []int64
	// ChildrenViaBridges: this GitLab (older than 17.0, by GET /version)
	// does not list child pipelines, so they were found through their
	// parents' trigger jobs, at one more request per pipeline.
	ChildrenViaBridges bool
	// Start is the trace's time 0: the Monday 00:00 UTC on or before since.
	Start time.Time
}

// active are pipeline statuses with jobs still to run or running.
var active = map[string]bool{"created": true, "waiting_for_resource": true, "preparing": true, "pending": true, "running": true,
	"scheduled": true, "canceling": true, "waiting_for_callback": true}

// ErrNoPipelines is History's error when the window holds no finished
// pipeline with a job that ran.
var ErrNoPipelines = errors.New("no finished pipeline with a job that ran in the window")

// History reads the pipelines of the watched projects created in [since,
// until) and their jobs that ran, as a trace in the format shoal sim replays,
// so that a policy can be measured on your own CI before it runs your fleet.
//
//   - The trace starts on the Monday 00:00 UTC on or before since, as the
//     format wants, so times of day and weekdays stay true.
//   - Stage k is the pipeline's k-th stage with a job that ran, in GitLab's
//     stage order (GitLab creates a pipeline's jobs stage by stage, so a
//     stage's lowest job ID, retried attempts included, orders it). Pipelines
//     using needs: are replayed stage by stage.
//   - A job's duration is GitLab's: from its start to its end. A retried job
//     is one job lasting all its attempts that ran (the runner time it
//     took). Jobs that never started (manual, skipped, canceled before a
//     runner took them) are left out.
//   - Child pipelines count as pipelines of their own, from their creation.
//     GitLab 17.0 on lists them; before, they are found through their
//     parents' trigger jobs (bridges).
//   - Pipelines still running or waiting are left out, and counted; so are
//     projects that refuse to list pipelines (CI/CD turned off).
//
// It makes two requests per 100 pipelines per project (parent and child
// pipelines are listed apart) and one per pipeline (two before GitLab 17.0),
// retried attempts included in a pipeline's jobs; the pipelines' jobs are read
// historyAtOnce at a time. progress, if not nil, is called with no pipeline
// read yet, and after each one.
func (s *Source) History(ctx context.Context, since, until time.Time, progress func(done, total int)) (*trace.Trace, HistoryStats, error) {
	st := HistoryStats{Start: trace.WeekStart(since)}
	if !until.After(since) {
		return nil, st, fmt.Errorf("read history: the window is empty: %s is not after %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	var stale []string // a list that could not be read again: only a long-running Source has one
	projects, err := s.projects(ctx, s.clk.Now(), &stale)
	if err != nil {
		return nil, st, err
	}
	st.Projects = len(projects)
	if v, _, err := s.c.Version.GetVersion(gitlab.WithContext(ctx)); err == nil {
		var major int
		if _, err := fmt.Sscanf(v.Version, "%d.", &major); err == nil && major < 17 {
			st.ChildrenViaBridges = true
		}
	}
	type found struct {
		project int64
		info    *gitlab.PipelineInfo
		at      time.Duration // since st.Start, to the tenth of a second the format keeps
	}
	var pipelines []found
	seen := map[int64]bool{}
	// keep adds p to list if it was created in the window and is not in yet.
	keep := func(list []found, project int64, p *gitlab.PipelineInfo) []found {
		if p.CreatedAt == nil || p.CreatedAt.Before(since) || !p.CreatedAt.Before(until) || seen[p.ID] {
			return list
		}
		seen[p.ID] = true
		return append(list, found{project, p, p.CreatedAt.Sub(st.Start).Round(100 * time.Millisecond)})
	}
projects:
	for _, pid := range projects {
		var mine []found // this project's, kept only if GitLab lists them all
		// GitLab lists child pipelines only when asked for them by source,
		// and only from GitLab 17.0 on: before, they are not listed at all.
		for _, source := range []*string{nil, gitlab.Ptr("parent_pipeline")} {
			// GitLab's created_after is strict: ask from a second before. A
			// GitLab older than created_after ignores it, but has
			// updated_after, which a pipeline created in the window passes too.
			from := gitlab.Ptr(since.Add(-time.Second))
			opt := &gitlab.ListProjectPipelinesOptions{ListOptions: gitlab.ListOptions{PerPage: 100}, Source: source,
				CreatedAfter: from, UpdatedAfter: from, CreatedBefore: gitlab.Ptr(until), Sort: gitlab.Ptr("asc")}
			ps, err := collect(&opt.Page, 0, func() ([]*gitlab.PipelineInfo, *gitlab.Response, error) {
				return s.c.Pipelines.ListProjectPipelines(pid, opt, gitlab.WithContext(ctx))
			})
			if gitlab.HasStatusCode(err, http.StatusForbidden) {
				st.Refused = append(st.Refused, pid)
				continue projects
			}
			if err != nil {
				return nil, st, fmt.Errorf("list pipelines of project %d: %w", pid, err)
			}
			for _, p := range ps {
				mine = keep(mine, pid, p)
			}
		}
		pipelines = append(pipelines, mine...)
	}
	if st.ChildrenViaBridges {
		// The list grows as children are found: their own children follow.
		for i := 0; i < len(pipelines); i++ {
			f := pipelines[i]
			opt := &gitlab.ListJobsOptions{ListOptions: gitlab.ListOptions{PerPage: 100}}
			bridges, err := collect(&opt.Page, 0, func() ([]*gitlab.Bridge, *gitlab.Response, error) {
				return s.c.Jobs.ListPipelineBridges(f.project, f.info.ID, opt, gitlab.WithContext(ctx))
			})
			if err != nil {
				return nil, st, fmt.Errorf("list trigger jobs of pipeline %d of project %d: %w", f.info.ID, f.project, err)
			}
			for _, b := range bridges {
				// A child runs in its parent's project; a multi-project
				// downstream pipeline is listed with its own project.
				if c := b.DownstreamPipeline; c != nil && c.ProjectID == f.project {
					pipelines = keep(pipelines, f.project, c)
				}
			}
		}
	}
	slices.SortFunc(pipelines, func(a, b found) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.info.ID, b.info.ID))
	})

	// The finished pipelines' stages, historyAtOnce pipelines at a time,
	// each kept as the trace needs it (not GitLab's whole job records).
	stagesOf := make([][][]trace.Job, len(pipelines))
	var mu sync.Mutex // progress is called one at a time, in order of count
	done := 0
	if progress != nil {
		progress(0, len(pipelines))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(historyAtOnce)
	for i, f := range pipelines {
		if gctx.Err() != nil {
			break // a read failed: the rest would fail too
		}
		g.Go(func() error {
			if !active[f.info.Status] {
				opt := &gitlab.ListJobsOptions{ListOptions: gitlab.ListOptions{PerPage: 100}, IncludeRetried: gitlab.Ptr(true)}
				jobs, err := collect(&opt.Page, 0, func() ([]*gitlab.Job, *gitlab.Response, error) {
					return s.c.Jobs.ListPipelineJobs(f.project, f.info.ID, opt, gitlab.WithContext(gctx))
				})
				if err != nil {
					return fmt.Errorf("list jobs of pipeline %d of project %d: %w", f.info.ID, f.project, err)
				}
				stagesOf[i] = traceStages(jobs)
			}
			if progress != nil {
				mu.Lock()
				done++
				progress(done, len(pipelines))
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, st, err
	}
	tr := &trace.Trace{}
	var jobID int64
	for i, f := range pipelines {
		switch {
		case active[f.info.Status]:
			st.Unfinished++
			continue
		case len(stagesOf[i]) == 0:
			st.Empty++
			continue
		}
		p := trace.Pipeline{ID: f.info.ID, CreatedAt: f.at, Stages: stagesOf[i]}
		for _, stage := range p.Stages {
			for k := range stage {
				jobID++
				stage[k].ID = jobID
			}
			st.Jobs += len(stage)
		}
		tr.Pipelines = append(tr.Pipelines, p)
	}
	st.Pipelines = len(tr.Pipelines)
	if st.Pipelines == 0 {
		return nil, st, fmt.Errorf("read history from %s to %s: %w (%d still running, %d with no job that ran, %d projects refused)",
			since.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339), ErrNoPipelines, st.Unfinished, st.Empty, len(st.Refused))
	}
	return tr, st, nil
}

// historyAtOnce is how many pipelines' jobs History reads at once: a week of
// 1,000 pipelines in about a minute. client-go waits and retries when
// GitLab's rate limit answers 429.
const historyAtOnce = 4

// traceStages is a pipeline's jobs as the trace keeps them: the stages that
// ran, each job lasting all its attempts, with its last attempt's tags, and
// no ID yet.
func traceStages(jobs []*gitlab.Job) [][]trace.Job {
	var out [][]trace.Job
	for _, stage := range ranStages(jobs) {
		var js []trace.Job
		for _, attempts := range stage {
			var d time.Duration
			for _, j := range attempts {
				if jd := time.Duration(j.Duration * float64(time.Second)); jd > 0 {
					d += jd
				} else {
					d += j.FinishedAt.Sub(*j.StartedAt)
				}
			}
			last := attempts[len(attempts)-1]
			js = append(js, trace.Job{Duration: d, Tags: tags.Sorted(last.TagList)})
		}
		out = append(out, js)
	}
	return out
}

// ranStages groups the attempts that ran (started and ended) by stage and
// job: stages in GitLab's order (their lowest job ID over every attempt),
// jobs by their first attempt's ID, each job's attempts by ID.
func ranStages(jobs []*gitlab.Job) [][][]*gitlab.Job {
	first := map[string]int64{} // stage → its lowest job ID, over every job
	for _, j := range jobs {
		if f, ok := first[j.Stage]; !ok || j.ID < f {
			first[j.Stage] = j.ID
		}
	}
	slices.SortFunc(jobs, func(a, b *gitlab.Job) int { return cmp.Compare(a.ID, b.ID) })
	type key struct{ stage, name string }
	attempts := map[key][]*gitlab.Job{}
	var order []key // by first attempt
	for _, j := range jobs {
		if j.StartedAt == nil || j.FinishedAt == nil {
			continue
		}
		k := key{j.Stage, j.Name}
		if attempts[k] == nil {
			order = append(order, k)
		}
		attempts[k] = append(attempts[k], j)
	}
	var names []string
	byStage := map[string][][]*gitlab.Job{}
	for _, k := range order {
		if byStage[k.stage] == nil {
			names = append(names, k.stage)
		}
		byStage[k.stage] = append(byStage[k.stage], attempts[k])
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(first[a], first[b]) })
	out := make([][][]*gitlab.Job, len(names))
	for i, name := range names {
		out[i] = byStage[name]
	}
	return out
}
