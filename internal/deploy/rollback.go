package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// Swarm keeps one previous spec per service. After an update it is the version
// before; after a rollback (Swarm's own, or shoal's of a failed deploy's other
// services) it is the version rolled back from, which is newer. Swarm's own
// rollback of a failed update clears it. So "the previous spec" is not always
// older, and 'shoal rollback' must check before using it.

// olderDeploy reports whether deploy id a was made before b. An id is the deploy's
// start in Unix nanoseconds, zero-padded to 20 digits (see Deploy), so ids of the
// same length order as strings; a shorter one (none: a spec from before shoal) is older.
func olderDeploy(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// cannotGoBack says why a service's previous spec is not the version before its
// current one ("" when it is). Deploy ids come from the clocks of the machines
// that deployed; Swarm's update state is the clock-free check: a rollback was
// the service's last change exactly when its previous spec is the version left.
func cannotGoBack(s swarm.Service) string {
	if us := s.UpdateStatus; us != nil {
		switch us.State {
		case swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackPaused:
			return fmt.Sprintf("it is mid-rollback (%s): 'docker service ps %s' shows its tasks", strings.ReplaceAll(string(us.State), "_", " "), s.Spec.Name)
		case swarm.UpdateStateRollbackCompleted:
			if s.PreviousSpec != nil {
				return fmt.Sprintf("its last change was a rollback, so its previous spec (version %s) is the version it left: going back to it would go forward", orDash(s.PreviousSpec.Labels[LabelVersion]))
			}
		}
	}
	if s.PreviousSpec == nil {
		return "Swarm keeps no previous spec for it (Swarm's own rollback of a failed update clears it)"
	}
	if prev, cur := s.PreviousSpec.Labels[LabelDeployID], s.Spec.Labels[LabelDeployID]; !olderDeploy(prev, cur) {
		return fmt.Sprintf("its previous spec (version %s) is not from an older deploy than what runs", orDash(s.PreviousSpec.Labels[LabelVersion]))
	}
	return ""
}

// rollbackPlan is what 'shoal rollback' does: return every service the stack's
// last deploy changed to its previous spec, which is then the stack as it was
// before that deploy. Services the deploy did not change stay as they are.
type rollbackPlan struct {
	version string          // the last deploy's version label
	targets []swarm.Service // the last deploy's services, each to go back
	blocked []string        // the last deploy's services that cannot, each with why
	created []string        // the last deploy's new services: no previous spec, left running
	others  []string        // services the last deploy did not change
}

func planRollback(services []swarm.Service) rollbackPlan {
	var rp rollbackPlan
	last := ""
	for _, s := range services {
		if s.Spec.Labels[LabelRelease] == "" && olderDeploy(last, s.Spec.Labels[LabelDeployID]) {
			last = s.Spec.Labels[LabelDeployID]
		}
	}
	for _, s := range services {
		name := s.Spec.Name
		switch {
		case s.Spec.Labels[LabelRelease] != "":
		case last == "" || s.Spec.Labels[LabelDeployID] != last:
			rp.others = append(rp.others, name)
		case s.PreviousSpec == nil && s.UpdateStatus == nil:
			// Never updated: the last deploy created it.
			rp.version = s.Spec.Labels[LabelVersion]
			rp.created = append(rp.created, name)
		default:
			rp.version = s.Spec.Labels[LabelVersion]
			if why := cannotGoBack(s); why != "" {
				rp.blocked = append(rp.blocked, name+": "+why)
			} else {
				rp.targets = append(rp.targets, s)
			}
		}
	}
	slices.SortFunc(rp.targets, func(a, b swarm.Service) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	slices.Sort(rp.blocked)
	slices.Sort(rp.created)
	slices.Sort(rp.others)
	return rp
}

// refusal is why the plan must not run, with what to do instead; nil if it may.
func (rp rollbackPlan) refusal(stackName string) error {
	next := fmt.Sprintf("\n  next: deploy the version you want explicitly ('shoal deploy --stack %s -f STACK_FILE --image-tag TAG'); 'shoal status --stack %s' shows what runs", stackName, stackName)
	switch {
	case len(rp.blocked) > 0:
		// Returning only some of the deploy's services would leave a stack that
		// never was: a version mix nobody deployed or tested.
		var b strings.Builder
		fmt.Fprintf(&b, "stack %s cannot be rolled back: Swarm no longer has the version before its last deploy (%s) for every service that deploy changed", stackName, orDash(rp.version))
		for _, why := range rp.blocked {
			fmt.Fprintf(&b, "\n  %s", why)
		}
		if len(rp.targets) > 0 {
			var names []string
			for _, s := range rp.targets {
				names = append(names, s.Spec.Name)
			}
			fmt.Fprintf(&b, "\n  rolling back only %s would leave the stack mixed", strings.Join(names, ", "))
		}
		b.WriteString("\n  nothing was changed")
		return fmt.Errorf("%s%s", b.String(), next)
	case len(rp.targets) == 0 && len(rp.created) > 0:
		return fmt.Errorf("stack %s has no earlier version to roll back to: its last deploy (%s) created %s; nothing was changed ('docker service rm' removes services)%s", stackName, orDash(rp.version), strings.Join(rp.created, ", "), next)
	case len(rp.targets) == 0:
		return fmt.Errorf("stack %s has no service deployed by shoal to roll back; nothing was changed%s", stackName, next)
	}
	return nil
}

// findLeftBehind names the services a failed deploy changed that are not back on
// their previous spec (their rollback failed, paused or timed out), which the
// rollback itself reports only as warnings. It reads the cluster, so each is
// told as it is now.
func (d *Deployer) findLeftBehind(ctx context.Context, plan *Plan, deployID string, de *DeployError) {
	// The deploy's context may be what ended it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	cur, err := d.existing(ctx, plan.Stack.Name)
	if err != nil {
		d.progress().Warn("could not check that every service was rolled back: %v", err)
		return
	}
	stackName := plan.Stack.Name
	for _, c := range plan.Changes {
		name := c.Service.Spec.Name
		s, ok := cur[name]
		if c.Action == ActionUnchanged || !ok || slices.Contains(de.RolledBack, name) ||
			slices.ContainsFunc(de.NotRolledBack, func(l LeftBehind) bool { return l.Service == name }) {
			continue // already told
		}
		mine := s.Spec.Labels[LabelDeployID] == deployID
		// Only an update status this deploy caused counts: an old one says nothing.
		var before *time.Time
		if c.Current != nil && c.Current.UpdateStatus != nil {
			before = c.Current.UpdateStatus.StartedAt
		}
		us := s.UpdateStatus
		ours := updatedSince(us, before)
		l := LeftBehind{Service: name}
		switch {
		case c.Action == ActionCreate && mine:
			l.State = "new in this deploy, not removed"
			l.Next = fmt.Sprintf("'docker service rm %s' removes it", name)
		case ours && us.State == swarm.UpdateStateRollbackPaused:
			// Its spec is the old one again: 'docker service rollback' would swap
			// back to the new one, and an update to the current spec finishes it.
			l.State = "mid-rollback: rollback paused: " + us.Message
			l.Next = fmt.Sprintf("'docker service ps %s' shows why its old tasks fail; then 'docker service update --force %s' finishes the rollback (not 'docker service rollback', which would return it to the new version)", name, name)
		case ours && us.State == swarm.UpdateStateRollbackStarted:
			l.State = "mid-rollback"
			l.Next = fmt.Sprintf("'docker service ps %s' shows its tasks; if it stays stuck, 'docker service update --force %s' retries the old version", name, name)
		case mine:
			l.State = "still on the new version"
			if ours && us.State == swarm.UpdateStatePaused {
				l.State += ", update paused: " + us.Message
			}
			l.Next = fmt.Sprintf("'docker service ps %s' shows its tasks; 'shoal rollback --stack %s' (or 'docker service rollback %s') returns it", name, stackName, name)
		default:
			continue
		}
		de.NotRolledBack = append(de.NotRolledBack, l)
	}
	slices.SortFunc(de.NotRolledBack, func(a, b LeftBehind) int { return strings.Compare(a.Service, b.Service) })
}
