package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoalci/shoal/internal/deploy/stack"
)

// ServiceStatus is one service as `shoal status` shows it.
type ServiceStatus struct {
	Name             string
	Image            string
	Running, Desired uint64
	UpdateState      string
	UpdateMessage    string
	Version          string
	DeployedBy       string
	DeployedAt       string
	CanRollBack      bool
}

// StackStatus is a stack's services, last deploy and lock.
type StackStatus struct {
	Stack    string
	Services []ServiceStatus
	Lock     *LockInfo
}

// Status reads the stack from the cluster.
func (d *Deployer) Status(ctx context.Context, stackName string) (*StackStatus, error) {
	res, err := d.Docker.ServiceList(ctx, client.ServiceListOptions{
		Filters: make(client.Filters).Add("label", stack.LabelNamespace+"="+stackName),
		Status:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("list services of %s: %w", stackName, err)
	}
	out := &StackStatus{Stack: stackName}
	for _, s := range res.Items {
		if s.Spec.Labels[LabelRelease] != "" {
			continue
		}
		ss := ServiceStatus{
			Name:        s.Spec.Name,
			Version:     s.Spec.Labels[LabelVersion],
			DeployedBy:  s.Spec.Labels[LabelDeployedBy],
			DeployedAt:  s.Spec.Labels[LabelDeployedAt],
			CanRollBack: cannotGoBack(s) == "",
		}
		if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
			ss.Image = stripDigest(cs.Image)
		}
		if s.ServiceStatus != nil {
			ss.Running, ss.Desired = s.ServiceStatus.RunningTasks, s.ServiceStatus.DesiredTasks
			if s.Spec.Mode.ReplicatedJob != nil || s.Spec.Mode.GlobalJob != nil {
				// A job's useful count is how many of its tasks completed.
				ss.Running = s.ServiceStatus.CompletedTasks
				ss.UpdateState = "job"
			}
		}
		if us := s.UpdateStatus; us != nil && ss.UpdateState == "" {
			ss.UpdateState, ss.UpdateMessage = string(us.State), us.Message
		}
		out.Services = append(out.Services, ss)
	}
	slices.SortFunc(out.Services, func(a, b ServiceStatus) int { return strings.Compare(a.Name, b.Name) })
	if out.Lock, err = d.LockStatus(ctx, stackName); err != nil {
		return nil, err
	}
	return out, nil
}

// Print writes the status as a table.
func (s *StackStatus) Print(w io.Writer) {
	if len(s.Services) == 0 {
		fmt.Fprintf(w, "stack %s has no services on this Swarm\n", s.Stack)
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tREPLICAS\tIMAGE\tUPDATE\tVERSION\tDEPLOYED BY\tDEPLOYED AT")
		for _, v := range s.Services {
			upd := orDash(v.UpdateState)
			if v.UpdateMessage != "" && v.UpdateState != string(swarm.UpdateStateCompleted) {
				upd += " (" + v.UpdateMessage + ")"
			}
			fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Running, v.Desired, v.Image, upd, orDash(v.Version), orDash(v.DeployedBy), orDash(v.DeployedAt))
		}
		tw.Flush()
	}
	if s.Lock != nil {
		fmt.Fprintf(w, "locked by %s since %s: %s\n", s.Lock.Owner, s.Lock.Since.UTC().Format(time.RFC3339), s.Lock.Reason)
	}
}

// RollbackOptions for `shoal rollback`.
type RollbackOptions struct {
	Reason   string
	LockWait time.Duration
	LockTTL  time.Duration
}

// Rollback returns the stack to where it was before its last deploy: every
// service that deploy changed goes back to its previous spec, with Swarm's own
// service rollback, under the deploy lock. It refuses, changing nothing, when
// Swarm no longer has that version of every one of them.
func (d *Deployer) Rollback(ctx context.Context, stackName string, o RollbackOptions) ([]string, error) {
	p := d.progress()
	p.Step("Connecting to the Swarm manager %s", d.Host)
	if err := d.CheckManager(ctx); err != nil {
		return nil, err
	}
	p.Step("Taking the deploy lock of stack %s", stackName)
	lock, err := d.AcquireLock(ctx, stackName, orDefault(o.Reason, "rollback"), o.LockWait, o.LockTTL)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := lock.Release(); err != nil {
			p.Warn("%v", err)
		}
	}()
	cur, err := d.existing(ctx, stackName)
	if err != nil {
		return nil, err
	}
	if len(cur) == 0 {
		return nil, fmt.Errorf("stack %s has no services on this Swarm: check --stack and --host", stackName)
	}
	rp := planRollback(slices.Collect(maps.Values(cur)))
	if err := rp.refusal(stackName); err != nil {
		return nil, err
	}
	targets := rp.targets
	p.Step("Rolling back the %d service(s) the last deploy (%s) changed", len(targets), orDash(rp.version))
	for _, name := range rp.created {
		p.Info("%s: created by that deploy, left running ('docker service rm %s' removes it)", name, name)
	}
	if len(rp.others) > 0 {
		p.Info("left as they are (not changed by that deploy): %s", strings.Join(rp.others, ", "))
	}
	var names []string
	var errs []error
	for _, s := range targets {
		prev := s.PreviousSpec.Labels[LabelVersion]
		p.Info("%s: %s → %s", s.Spec.Name, orDash(s.Spec.Labels[LabelVersion]), orDash(prev))
		if err := d.rollbackService(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("roll back %s: %w", s.Spec.Name, err))
			continue
		}
		names = append(names, s.Spec.Name)
	}
	for _, s := range targets {
		if slices.Contains(names, s.Spec.Name) {
			if err := d.waitRolledBack(ctx, s.ID, s.Spec.Name); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.Spec.Name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return names, fmt.Errorf("%w\n  next: 'shoal status --stack %s' and 'docker service ps' on the manager show what is running", err, stackName)
	}
	p.Step("Rolled back %s", strings.Join(names, ", "))
	return names, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// LogsOptions for `shoal logs`.
type LogsOptions struct {
	Follow     bool
	Tail       string // lines per task; "all" by default
	Since      string
	Timestamps bool
}

// Logs copies a service's logs (all its tasks) to w.
func (d *Deployer) Logs(ctx context.Context, stackName, service string, o LogsOptions, w io.Writer) error {
	name := service
	if !strings.HasPrefix(service, stackName+"_") {
		name = stackName + "_" + service
	}
	res, err := d.Docker.ServiceList(ctx, client.ServiceListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		return fmt.Errorf("find service %s: %w", name, err)
	}
	id := ""
	var known []string
	for _, s := range res.Items {
		if s.Spec.Name == name {
			id = s.ID
		}
	}
	if id == "" {
		if st, err := d.Status(ctx, stackName); err == nil {
			for _, s := range st.Services {
				known = append(known, strings.TrimPrefix(s.Name, stackName+"_"))
			}
		}
		return fmt.Errorf("stack %s has no service %q (services: %s)", stackName, service, strings.Join(known, ", "))
	}
	rc, err := d.Docker.ServiceLogs(ctx, id, client.ServiceLogsOptions{
		ShowStdout: true, ShowStderr: true, Follow: o.Follow, Tail: orDefault(o.Tail, "all"), Since: o.Since, Timestamps: o.Timestamps,
	})
	if err != nil {
		return fmt.Errorf("logs of %s: %w", name, err)
	}
	defer rc.Close()
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return fmt.Errorf("logs of %s: %w", name, err)
	}
	return nil
}
