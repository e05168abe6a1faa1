package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoalci/shoal/internal/deploy/stack"
)

// LabelRelease marks the one-off services that run release tasks.
const LabelRelease = "io.shoal.release"

// releaseSpec is the service's spec turned into a run-once Swarm job: same image,
// environment, networks, secrets and configs; no published ports, no network
// aliases, no health check, no restarts.
func releaseSpec(st *stack.Stack, i int, rt stack.ReleaseTask, suffix string) (swarm.ServiceSpec, error) {
	svc, ok := st.Service(rt.Service)
	if !ok {
		return swarm.ServiceSpec{}, fmt.Errorf("release task %d: unknown service %q", i+1, rt.Service)
	}
	var spec swarm.ServiceSpec
	b, err := json.Marshal(svc.Spec) // deep copy
	if err != nil {
		return spec, err
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return spec, err
	}
	spec.Name = fmt.Sprintf("%s_release-%d-%s", st.Name, i+1, suffix)
	spec.Labels = map[string]string{stack.LabelNamespace: st.Name, LabelRelease: rt.Service}
	spec.TaskTemplate.ContainerSpec.Args = rt.Command
	spec.TaskTemplate.ContainerSpec.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
	spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}
	one := uint64(1)
	spec.Mode = swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}}
	spec.UpdateConfig, spec.RollbackConfig, spec.EndpointSpec = nil, nil, nil
	// The job joins the service's networks but not under its name: with the
	// service's aliases, Swarm's DNS would hand the job's address to clients of
	// the service (tasks.web), and requests would land on a container that
	// serves nothing.
	for i := range spec.TaskTemplate.Networks {
		spec.TaskTemplate.Networks[i].Aliases = nil
	}
	return spec, nil
}

// runRelease runs one release task to completion, streaming its logs. One
// that outlives its timeout, or shoal, is left to finish: a migration cut
// off half way can leave the database worse off than either version expects.
func (d *Deployer) runRelease(ctx context.Context, st *stack.Stack, i int, rt stack.ReleaseTask) error {
	p := d.progress()
	cmd := strings.Join(rt.Command, " ")
	spec, err := releaseSpec(st, i, rt, fmt.Sprint(d.clock().Now().Unix()))
	if err != nil {
		return err
	}
	p.Info("release %d: %s (image %s)", i+1, cmd, spec.TaskTemplate.ContainerSpec.Image)
	auth, err := d.Registry.For(spec.TaskTemplate.ContainerSpec.Image)
	if err != nil {
		return fmt.Errorf("release task %q: registry credential: %w", cmd, err)
	}
	res, err := d.Docker.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: spec, EncodedRegistryAuth: auth, QueryRegistry: true})
	if err != nil {
		return fmt.Errorf("release task %q: create job: %w", cmd, err)
	}
	running := false // left running: not removed
	defer func() {
		if !running {
			d.removeJob(ctx, res.ID)
		}
	}()

	timeout := time.Duration(rt.Timeout)
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	logCtx, stopLogs := context.WithCancel(ctx)
	defer stopLogs()
	var wg sync.WaitGroup
	lastLine := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.streamServiceLogs(logCtx, res.ID, fmt.Sprintf("release %d", i+1), lastLine)
	}()

	task, err := d.waitJob(ctx, res.ID, timeout)
	// The log stream trails the task: give it a moment to drain, but not forever.
	idle := d.clock().NewTimer(time.Second)
	for drained := false; !drained; {
		select {
		case <-lastLine:
			idle.Reset(500 * time.Millisecond)
		case <-idle.C():
			drained = true
		}
	}
	idle.Stop()
	stopLogs()
	wg.Wait()
	if err != nil {
		running = true
		return fmt.Errorf("release task %q: %w; it is left to finish, as service %s (follow it: docker service logs -f %s; the next deploy waits for it)", cmd, err, spec.Name, spec.Name)
	}
	if task.Status.State != swarm.TaskStateComplete {
		exit := ""
		if cs := task.Status.ContainerStatus; cs != nil {
			exit = fmt.Sprintf(" (exit code %d)", cs.ExitCode)
		}
		tail := d.taskLogTail(ctx, task.ID, 15)
		msg := fmt.Sprintf("release task %q failed%s: %s %s", cmd, exit, task.Status.Message, task.Status.Err)
		if len(tail) > 0 {
			msg += "\n    last log lines:\n    | " + strings.Join(tail, "\n    | ")
		}
		return fmt.Errorf("%s", msg)
	}
	p.Info("release %d: done", i+1)
	return nil
}

// removeJob removes a release job service, even when ctx has ended.
func (d *Deployer) removeJob(ctx context.Context, id string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = d.Docker.ServiceRemove(rctx, id, client.ServiceRemoveOptions{})
}

// releasesDone fails while a release task of an earlier deploy of the stack
// still runs (one left past its timeout, or when shoal stopped): two
// migrations must not run at once. It removes those that have ended. Called
// once before a deploy's release tasks: each of them removes its own job.
func (d *Deployer) releasesDone(ctx context.Context, stackName string) error {
	jobs, err := d.Docker.ServiceList(ctx, client.ServiceListOptions{Filters: make(client.Filters).
		Add("label", LabelRelease).Add("label", stack.LabelNamespace+"="+stackName)})
	if err != nil {
		return fmt.Errorf("list earlier release tasks: %w", err)
	}
	for _, job := range jobs.Items {
		tasks, err := d.Docker.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", job.ID)})
		if err != nil {
			return fmt.Errorf("list the tasks of %s: %w", job.Spec.Name, err)
		}
		if slices.ContainsFunc(tasks.Items, func(t swarm.Task) bool { return !ended(t.Status.State) }) {
			return fmt.Errorf("the release task %s of an earlier deploy is still running; wait for it (docker service logs -f %s), or stop it (docker service rm %s), then deploy again",
				job.Spec.Name, job.Spec.Name, job.Spec.Name)
		}
		d.removeJob(ctx, job.ID)
	}
	return nil
}

// ended: a task in this state runs no more.
func ended(s swarm.TaskState) bool {
	switch s {
	case swarm.TaskStateComplete, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown, swarm.TaskStateOrphaned:
		return true
	}
	return false
}

// waitJob waits for the job's task to finish and returns it.
func (d *Deployer) waitJob(ctx context.Context, id string, timeout time.Duration) (swarm.Task, error) {
	deadline := d.clock().Now().Add(timeout)
	for {
		tasks, err := d.Docker.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", id)})
		if err != nil {
			return swarm.Task{}, err
		}
		for _, t := range tasks.Items {
			if ended(t.Status.State) {
				return t, nil
			}
		}
		if !d.clock().Now().Before(deadline) {
			return swarm.Task{}, fmt.Errorf("not finished after %s (raise x-shoal.release[].timeout)", timeout)
		}
		if err := d.clock().Sleep(ctx, d.poll()); err != nil {
			return swarm.Task{}, err
		}
	}
}

// streamServiceLogs follows a service's logs into the progress output until ctx ends.
func (d *Deployer) streamServiceLogs(ctx context.Context, id, source string, line chan<- struct{}) {
	rc, err := d.Docker.ServiceLogs(ctx, id, client.ServiceLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		pw.CloseWithError(err)
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		d.progress().Log(source, sc.Text())
		select {
		case line <- struct{}{}:
		default:
		}
	}
}
