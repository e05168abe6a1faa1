package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// tracked is a service being rolled out by this deploy.
type tracked struct {
	name    string
	id      string
	created bool
	// prevStarted is the UpdateStatus.StartedAt before our update, so an old
	// "completed" status from the previous deploy is not mistaken for ours.
	prevStarted *time.Time
	updatedAt   time.Time
	image       string // what this deploy asked for, without digest
	// rollbackCause is Swarm's message when it started rolling back.
	rollbackCause string
	done          bool
	failure       *ServiceFailure
}

// grace is how long a service whose update Swarm did not start (a change of
// service labels only) must look converged before it counts as done.
const grace = 3 * time.Second

func (d *Deployer) rollout(ctx context.Context, plan *Plan, o Options, deployID string, timeout time.Duration) error {
	p := d.progress()
	var ts []*tracked
	for _, c := range plan.Changes {
		if c.Action != ActionUnchanged {
			ts = append(ts, &tracked{name: c.Service.Spec.Name, image: stripDigest(c.Service.Spec.TaskTemplate.ContainerSpec.Image)})
		}
	}
	p.Step("Rolling out %d service(s)", len(ts))
	i := 0
	for _, c := range plan.Changes {
		if c.Action == ActionUnchanged {
			continue
		}
		t := ts[i]
		i++
		spec := d.withRecord(c.Service.Spec, c.specHash, o.Version, deployID)
		var warnings []string
		auth, err := d.Registry.For(spec.TaskTemplate.ContainerSpec.Image)
		sent := err == nil
		switch {
		case err != nil:
			err = fmt.Errorf("registry credential: %w", err)
		case c.Action == ActionCreate:
			var res client.ServiceCreateResult
			res, err = d.Docker.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: spec, EncodedRegistryAuth: auth, QueryRegistry: true})
			t.id, t.created, warnings = res.ID, true, res.Warnings
		default:
			if o.Force {
				spec.TaskTemplate.ForceUpdate = c.Current.Spec.TaskTemplate.ForceUpdate + 1
			}
			t.id = c.Current.ID
			if c.Current.UpdateStatus != nil {
				t.prevStarted = c.Current.UpdateStatus.StartedAt
			}
			var res client.ServiceUpdateResult
			res, err = d.Docker.ServiceUpdate(ctx, c.Current.ID, client.ServiceUpdateOptions{
				Version: c.Current.Version, Spec: spec, EncodedRegistryAuth: auth, QueryRegistry: true,
			})
			warnings = res.Warnings
		}
		t.updatedAt = d.clock().Now()
		for _, w := range warnings {
			p.Warn("%s: %s", t.name, w)
		}
		if err != nil {
			cause := fmt.Errorf("%s %s: %w", c.Action, t.name, err)
			var unknown *LeftBehind
			if sent {
				unknown = d.settleFailedSend(ctx, plan.Stack.Name, c, spec, t, err)
			} else {
				t.failure = &ServiceFailure{Service: t.name, State: string(c.Action) + " not sent", TaskError: err.Error()}
				t.id = ""
			}
			// Services already sent must go back too: the deploy is all or nothing.
			de := d.fail(ctx, plan.Stack.Name, ts[:i], cause)
			if unknown != nil {
				de.NotRolledBack = append(de.NotRolledBack, *unknown)
			}
			return de
		}
		p.Info("%s %s", map[Action]string{ActionCreate: "created", ActionUpdate: "updating"}[c.Action], t.name)
	}

	deadline := d.clock().Now().Add(timeout)
	for {
		pending := 0
		for _, t := range ts {
			if t.done || t.failure != nil {
				continue
			}
			if err := d.observe(ctx, t); err != nil {
				return d.fail(ctx, plan.Stack.Name, ts, err)
			}
			if !t.done && t.failure == nil {
				pending++
			}
		}
		if slices.ContainsFunc(ts, func(t *tracked) bool { return t.failure != nil }) {
			// Let Swarm finish the rollbacks it started before touching the others.
			return d.fail(ctx, plan.Stack.Name, ts, nil)
		}
		if pending == 0 {
			return nil
		}
		if !d.clock().Now().Before(deadline) {
			for _, t := range ts {
				if !t.done && t.failure == nil {
					t.failure = &ServiceFailure{Service: t.name, State: fmt.Sprintf("not converged after %s", timeout)}
					d.lastTaskError(ctx, t, "")
				}
			}
			return d.fail(ctx, plan.Stack.Name, ts, ErrTimeout)
		}
		if err := d.clock().Sleep(ctx, d.poll()); err != nil {
			return d.fail(ctx, plan.Stack.Name, ts, err)
		}
	}
}

// settleFailedSend decides what a create or update that returned an error did.
// An error is not a refusal: a cancelled context, a timeout or a lost SSH
// connection can cut the answer off after the manager applied the change. So
// the service is read back: carrying this deploy's id, it was changed and goes
// back with the others (t keeps its id); without it, it is unchanged (t.id is
// cleared: rolling it back would undo an older deploy). When it cannot be read,
// its state is unknown and the returned LeftBehind says what to do.
func (d *Deployer) settleFailedSend(ctx context.Context, stackName string, c Change, sent swarm.ServiceSpec, t *tracked, sendErr error) *LeftBehind {
	// The deploy's context may be what failed the request.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	ref := t.name // a create's answer (the ID) may be what was lost
	if c.Action != ActionCreate {
		ref = c.Current.ID
	}
	ins, err := d.Docker.ServiceInspect(ctx, ref, client.ServiceInspectOptions{})
	switch {
	case err != nil && c.Action == ActionCreate && cerrdefs.IsNotFound(err):
		// Not created: as a refusal, below.
	case err != nil:
		t.failure = &ServiceFailure{Service: t.name, State: string(c.Action) + " sent, state unknown", TaskError: sendErr.Error()}
		t.id = ""
		next := fmt.Sprintf("run 'shoal status --stack %s': if %s shows this deploy's version (%s), 'docker service rollback %s' returns it", stackName, t.name, orDash(sent.Labels[LabelVersion]), t.name)
		if c.Action == ActionCreate {
			next = fmt.Sprintf("run 'shoal status --stack %s': if it lists %s, 'docker service rm %s' removes it", stackName, t.name, t.name)
		}
		return &LeftBehind{
			Service: t.name,
			State:   fmt.Sprintf("unknown: the %s was sent but its answer was lost, and reading the service back failed (%v)", c.Action, err),
			Next:    next,
		}
	case ins.Service.Spec.Labels[LabelDeployID] == sent.Labels[LabelDeployID]:
		t.id = ins.Service.ID
		t.failure = &ServiceFailure{Service: t.name, State: string(c.Action) + " applied by the manager, but its answer was lost", TaskError: sendErr.Error()}
		d.progress().Warn("%s: the %s's answer was lost, but the manager applied it: it is rolled back with the others", t.name, c.Action)
		return nil
	}
	t.failure = &ServiceFailure{Service: t.name, State: string(c.Action) + " refused", TaskError: sendErr.Error()}
	t.id = ""
	return nil
}

// updatedSince: the update status us is of an update begun since the one that
// began at prev (nil: none), so it says something of this deploy's.
func updatedSince(us *swarm.UpdateStatus, prev *time.Time) bool {
	return us != nil && us.StartedAt != nil && (prev == nil || !us.StartedAt.Equal(*prev))
}

// observe reads one service's rollout and marks it done or failed.
func (d *Deployer) observe(ctx context.Context, t *tracked) error {
	ins, err := d.Docker.ServiceInspect(ctx, t.id, client.ServiceInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect %s: %w", t.name, err)
	}
	svc := ins.Service
	tasks, err := d.Docker.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", t.id)})
	if err != nil {
		return fmt.Errorf("tasks of %s: %w", t.name, err)
	}
	if svc.Spec.Mode.ReplicatedJob != nil || svc.Spec.Mode.GlobalJob != nil {
		d.observeJob(ctx, t, svc, tasks.Items)
		return nil
	}
	c := countTasks(svc, tasks.Items)
	st := ServiceState{Running: c.running, Desired: c.desired}

	us := svc.UpdateStatus
	ours := updatedSince(us, t.prevStarted)
	// Zero desired tasks is converged only when the file asks for zero replicas:
	// a global service with no tasks yet has simply not been scheduled.
	zeroWanted := svc.Spec.Mode.Replicated != nil && c.desired == 0
	converged := c.running == c.desired && c.starting == 0 && (c.desired > 0 || zeroWanted)
	switch {
	case ours:
		st.State, st.Message = strings.ReplaceAll(string(us.State), "_", " "), us.Message
		switch us.State {
		case swarm.UpdateStateCompleted:
			t.done = converged
		case swarm.UpdateStatePaused, swarm.UpdateStateRollbackPaused, swarm.UpdateStateRollbackCompleted:
			t.failure = &ServiceFailure{Service: t.name, State: failureState(us), RolledBack: us.State == swarm.UpdateStateRollbackCompleted}
			d.lastTaskError(ctx, t, t.rollbackCause)
		case swarm.UpdateStateRollbackStarted:
			t.rollbackCause = us.Message
		}
	case t.created:
		st.State = "starting"
		t.done = converged
	default:
		st.State = "waiting for the update to start"
		// No update of ours started: only service-level settings changed.
		t.done = converged && c.imagesMatch && d.clock().Since(t.updatedAt) >= grace
	}
	// A new service, or one whose update never started, has no Swarm rollback to
	// watch: tasks failing again and again is its failure.
	if !ours && t.failure == nil && c.failedSince(t.updatedAt.Add(-time.Second)) >= 3 {
		t.failure = &ServiceFailure{Service: t.name, State: "tasks keep failing"}
		d.lastTaskError(ctx, t, "")
	}
	if t.done {
		st.State = "converged"
	}
	d.progress().Service(t.name, st)
	return nil
}

func failureState(us *swarm.UpdateStatus) string {
	switch us.State {
	case swarm.UpdateStateRollbackCompleted:
		return "update failed, Swarm rolled it back"
	case swarm.UpdateStatePaused:
		return "update paused: " + us.Message
	}
	return "rollback paused: " + us.Message
}

// observeJob follows a job-mode service of the stack (not a release task): it is
// done when its current run's tasks have completed, failed when one of them failed.
func (d *Deployer) observeJob(ctx context.Context, t *tracked, svc swarm.Service, tasks []swarm.Task) {
	var iteration uint64
	if svc.JobStatus != nil {
		iteration = svc.JobStatus.JobIteration.Index
	}
	want := uint64(0)
	if rj := svc.Spec.Mode.ReplicatedJob; rj != nil {
		want = 1
		if rj.TotalCompletions != nil {
			want = *rj.TotalCompletions
		}
	}
	var complete, active uint64
	failed := false
	for _, tk := range tasks {
		if tk.JobIteration != nil && tk.JobIteration.Index != iteration {
			continue // an earlier run of the job
		}
		switch tk.Status.State {
		case swarm.TaskStateComplete:
			complete++
		case swarm.TaskStateFailed, swarm.TaskStateRejected:
			failed = true
		default:
			active++
		}
	}
	if want == 0 { // global job: one task per eligible node
		want = complete + active
	}
	st := ServiceState{Running: complete, Desired: want, State: "job running"}
	switch {
	case failed:
		t.failure = &ServiceFailure{Service: t.name, State: "job failed"}
		d.lastTaskError(ctx, t, "")
		st.State = "job failed"
	case want > 0 && complete >= want:
		t.done = true
		st.State = "job completed"
	}
	d.progress().Service(t.name, st)
}

type taskCounts struct {
	desired, running, starting uint64
	imagesMatch                bool
	failedAt                   []time.Time
}

func (c taskCounts) failedSince(t time.Time) int {
	n := 0
	for _, at := range c.failedAt {
		if at.After(t) {
			n++
		}
	}
	return n
}

func countTasks(svc swarm.Service, tasks []swarm.Task) taskCounts {
	c := taskCounts{imagesMatch: true}
	if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
		c.desired = *r.Replicas
	}
	want := svc.Spec.TaskTemplate.ContainerSpec
	for _, t := range tasks {
		switch {
		case t.Status.State == swarm.TaskStateFailed || t.Status.State == swarm.TaskStateRejected:
			c.failedAt = append(c.failedAt, t.Status.Timestamp)
		case t.DesiredState != swarm.TaskStateRunning:
		case t.Status.State == swarm.TaskStateRunning:
			c.running++
			if want != nil && t.Spec.ContainerSpec != nil && stripDigest(t.Spec.ContainerSpec.Image) != stripDigest(want.Image) {
				c.imagesMatch = false
			}
		default:
			c.starting++
		}
	}
	if svc.Spec.Mode.Global != nil {
		c.desired = c.running + c.starting
	}
	return c
}

// taskInMessage finds the task Swarm names in an update status message
// ("update rolled back due to failure or early termination of task q5afo90d...").
var taskInMessage = regexp.MustCompile(`task ([a-z0-9]{25})`)

// lastTaskError fills a failure with what the failing task said: its state, error,
// exit code, failing health check output and log tail.
func (d *Deployer) lastTaskError(ctx context.Context, t *tracked, message string) {
	tasks, err := d.Docker.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", t.id)})
	if err != nil {
		return
	}
	hint := ""
	if m := taskInMessage.FindStringSubmatch(message); m != nil {
		hint = m[1]
	}
	var pick *swarm.Task
	for i := range tasks.Items {
		tk := &tasks.Items[i]
		if tk.ID == hint {
			pick = tk
			break
		}
		// Otherwise the newest task of the new image that is not running.
		if tk.Status.State == swarm.TaskStateRunning || tk.Spec.ContainerSpec == nil || stripDigest(tk.Spec.ContainerSpec.Image) != t.image {
			continue
		}
		if pick == nil || tk.Status.Timestamp.After(pick.Status.Timestamp) {
			pick = tk
		}
	}
	if pick == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "task %s %s", shortID(pick.ID), pick.Status.State)
	if pick.Status.Message != "" {
		fmt.Fprintf(&b, " (%s)", pick.Status.Message)
	}
	if pick.Status.Err != "" {
		fmt.Fprintf(&b, ": %s", pick.Status.Err)
	}
	if cs := pick.Status.ContainerStatus; cs != nil && cs.ContainerID != "" {
		if cs.ExitCode != 0 {
			fmt.Fprintf(&b, ", exit code %d", cs.ExitCode)
		}
		// Only works when the task ran on the manager we talk to; elsewhere the
		// container is out of reach and the task's own words must do.
		if ci, err := d.Docker.ContainerInspect(ctx, cs.ContainerID, client.ContainerInspectOptions{}); err == nil && ci.Container.State != nil {
			if h := ci.Container.State.Health; h != nil && h.Status == "unhealthy" && len(h.Log) > 0 {
				last := h.Log[len(h.Log)-1]
				fmt.Fprintf(&b, "; health check failing (exit %d): %s", last.ExitCode, strings.TrimSpace(last.Output))
			}
		}
	}
	t.failure.TaskError = b.String()
	t.failure.LogTail = d.taskLogTail(ctx, pick.ID, 15)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (d *Deployer) taskLogTail(ctx context.Context, taskID string, n int) []string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rc, err := d.Docker.TaskLogs(ctx, taskID, client.TaskLogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(n)})
	if err != nil {
		return nil
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil && out.Len() == 0 {
		return nil
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	return lines
}

// fail returns every service this deploy touched to where it was: Swarm has
// already rolled back the ones whose update failed; the others are rolled back
// explicitly, and services this deploy created are removed.
func (d *Deployer) fail(ctx context.Context, stackName string, ts []*tracked, cause error) *DeployError {
	p := d.progress()
	// Rollbacks must happen even when the deploy's context was cancelled.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	e := &DeployError{Stack: stackName, Err: cause}
	p.Step("Rolling back stack %s", stackName)
	var waiting []*tracked
	for _, t := range ts {
		if t.id == "" {
			continue
		}
		if t.failure != nil && t.failure.RolledBack {
			e.RolledBack = append(e.RolledBack, t.name)
			continue
		}
		if t.created {
			if _, err := d.Docker.ServiceRemove(ctx, t.id, client.ServiceRemoveOptions{}); err != nil {
				p.Warn("remove %s: %v", t.name, err)
			} else {
				p.Info("removed %s (new in this deploy)", t.name)
			}
			continue
		}
		ins, err := d.Docker.ServiceInspect(ctx, t.id, client.ServiceInspectOptions{})
		if err != nil {
			p.Warn("inspect %s: %v", t.name, err)
			continue
		}
		us := ins.Service.UpdateStatus
		ours := updatedSince(us, t.prevStarted)
		switch {
		case ours && (us.State == swarm.UpdateStateRollbackStarted || us.State == swarm.UpdateStateRollbackCompleted):
			// Swarm saw this update fail too and is rolling it back (or has: then
			// it has also cleared PreviousSpec). Say why, not only that.
			p.Info("%s: rolled back by Swarm", t.name)
			if t.failure == nil {
				t.failure = &ServiceFailure{Service: t.name, State: "update failed, Swarm rolled it back", RolledBack: true}
				d.lastTaskError(ctx, t, us.Message)
			}
		case ours && us.State == swarm.UpdateStateRollbackPaused:
			if t.failure == nil {
				t.failure = &ServiceFailure{Service: t.name, State: failureState(us)}
			}
			continue
		default:
			if err := d.rollbackService(ctx, ins.Service); err != nil {
				p.Warn("roll back %s: %v", t.name, err)
				continue
			}
			p.Info("%s: rolling back to the previous spec", t.name)
		}
		waiting = append(waiting, t)
	}
	for _, t := range waiting {
		if err := d.waitRolledBack(ctx, t.id, t.name); err != nil {
			p.Warn("%s: %v", t.name, err)
			continue
		}
		e.RolledBack = append(e.RolledBack, t.name)
	}
	for _, t := range ts {
		if t.failure != nil {
			e.Failures = append(e.Failures, *t.failure)
		}
	}
	slices.Sort(e.RolledBack)
	return e
}

func (d *Deployer) rollbackService(ctx context.Context, svc swarm.Service) error {
	if svc.PreviousSpec == nil {
		return errors.New("no previous spec to roll back to")
	}
	auth, err := d.Registry.For(svc.PreviousSpec.TaskTemplate.ContainerSpec.Image)
	if err != nil {
		return fmt.Errorf("registry credential: %w", err)
	}
	_, err = d.Docker.ServiceUpdate(ctx, svc.ID, client.ServiceUpdateOptions{
		Version: svc.Version, Spec: svc.Spec, Rollback: "previous", EncodedRegistryAuth: auth,
	})
	return err
}

// waitRolledBack waits until a rollback has finished and the tasks run again.
func (d *Deployer) waitRolledBack(ctx context.Context, id, name string) error {
	for {
		ins, err := d.Docker.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
		if err != nil {
			return err
		}
		tasks, err := d.Docker.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", id)})
		if err != nil {
			return err
		}
		c := countTasks(ins.Service, tasks.Items)
		us := ins.Service.UpdateStatus
		state := "rolling back"
		if us != nil {
			state = strings.ReplaceAll(string(us.State), "_", " ")
		}
		d.progress().Service(name, ServiceState{Running: c.running, Desired: c.desired, State: state})
		if us != nil && us.State == swarm.UpdateStateRollbackPaused {
			return fmt.Errorf("rollback paused: %s; inspect with 'docker service ps %s'", us.Message, name)
		}
		if (us == nil || us.State == swarm.UpdateStateRollbackCompleted) && c.running == c.desired && c.starting == 0 {
			return nil
		}
		if err := d.clock().Sleep(ctx, d.poll()); err != nil {
			return fmt.Errorf("rollback not finished: %w", err)
		}
	}
}
