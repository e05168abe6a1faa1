package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// The deploy lock lives in the Swarm itself, as a config named shoal-lock-<stack>:
// creating a config whose name exists fails atomically on the managers (Raft), so
// two pipelines on two machines can't both hold it. Its labels say who holds it.
const (
	lockPrefix      = "shoal-lock-"
	labelLockOwner  = "io.shoal.lock.owner"
	labelLockReason = "io.shoal.lock.reason"
	labelLockSince  = "io.shoal.lock.since"
	labelLockTTL    = "io.shoal.lock.ttl"
	// labelLockRenewed is refreshed while the holder runs, so a long deploy's lock
	// never looks abandoned; only a dead holder's lock goes stale.
	labelLockRenewed = "io.shoal.lock.renewed"
)

// DefaultLockTTL is how long a lock is honoured when its holder never released it
// (a killed CI job); a deploy that runs longer should pass a larger TTL.
const DefaultLockTTL = 30 * time.Minute

// LockInfo describes a held lock.
type LockInfo struct {
	Stack  string
	Owner  string
	Reason string
	Since  time.Time
	// Renewed is the holder's last sign of life.
	Renewed time.Time
	TTL     time.Duration
	id      string
	// changed is when the manager last wrote the lock (taken or renewed), by
	// the manager's clock: staleness is judged on it, so a deployer's clock
	// that is off does not take over a live lock or keep a dead one.
	changed time.Time
}

// Stale says whether the holder has not renewed the lock for longer than its TTL.
func (l LockInfo) Stale(now time.Time) bool {
	last := l.Since
	if l.Renewed.After(last) {
		last = l.Renewed
	}
	return l.TTL > 0 && now.Sub(last) > l.TTL
}

// staleOnManager says whether the holder has not renewed the lock for longer than
// its TTL, by the manager's clock (its time now against when it last wrote the
// lock). Only when the manager does not tell its time is this machine's used.
func (d *Deployer) staleOnManager(ctx context.Context, l *LockInfo, localNow time.Time) (bool, error) {
	if l.changed.IsZero() {
		return l.Stale(localNow), nil
	}
	info, err := d.Docker.Info(ctx, client.InfoOptions{})
	if err != nil {
		return false, fmt.Errorf("read the manager's clock to judge the deploy lock: %w", err)
	}
	now, err := time.Parse(time.RFC3339Nano, info.Info.SystemTime)
	if err != nil {
		return l.Stale(localNow), nil
	}
	return l.TTL > 0 && now.Sub(l.changed) > l.TTL, nil
}

// LockLostError is a deploy whose lock was removed or taken over while it ran:
// another deploy may be running, so this one must stop.
type LockLostError struct {
	Stack string
	// Holder is who holds the lock now; nil when nobody does.
	Holder *LockInfo
}

func (e *LockLostError) Error() string {
	if e.Holder == nil {
		return fmt.Sprintf("the deploy lock of stack %s was removed while this deploy ran (by 'shoal lock release', or a takeover after its TTL by a deploy that has finished since); another deploy may have changed the stack", e.Stack)
	}
	return fmt.Sprintf("the deploy lock of stack %s was taken over while this deploy ran: %s holds it since %s (%s); that deploy may be changing the stack",
		e.Stack, e.Holder.Owner, e.Holder.Since.UTC().Format(time.RFC3339), e.Holder.Reason)
}

// LockHeldError is returned when another deploy holds the stack's lock.
type LockHeldError struct{ Lock LockInfo }

func (e *LockHeldError) Error() string {
	return fmt.Sprintf("stack %s is locked by %s since %s (%s); wait with --lock-wait, or if that deploy is dead run 'shoal lock release --stack %s'",
		e.Lock.Stack, e.Lock.Owner, e.Lock.Since.UTC().Format(time.RFC3339), e.Lock.Reason, e.Lock.Stack)
}

// Lock is a held deploy lock.
type Lock struct {
	LockInfo
	d    *Deployer
	stop context.CancelFunc
	done chan struct{}
}

// AcquireLock takes the stack's lock, waiting up to wait for a holder to let go
// and taking over a stale lock.
func (d *Deployer) AcquireLock(ctx context.Context, stack, reason string, wait, ttl time.Duration) (*Lock, error) {
	if ttl == 0 {
		ttl = DefaultLockTTL
	}
	deadline := d.clock().Now().Add(wait)
	announced := false
	for {
		now := d.clock().Now()
		spec := swarm.ConfigSpec{
			Annotations: swarm.Annotations{
				Name: lockPrefix + stack,
				Labels: map[string]string{
					labelLockOwner:  d.Performer,
					labelLockReason: reason,
					labelLockSince:  now.UTC().Format(time.RFC3339Nano),
					labelLockTTL:    ttl.String(),
				},
			},
			Data: []byte(d.Performer + "\n" + reason + "\n"),
		}
		res, err := d.Docker.ConfigCreate(ctx, client.ConfigCreateOptions{Spec: spec})
		if err == nil {
			l := &Lock{LockInfo: LockInfo{Stack: stack, Owner: d.Performer, Reason: reason, Since: now, TTL: ttl, id: res.ID}, d: d, done: make(chan struct{})}
			var kctx context.Context
			kctx, l.stop = context.WithCancel(context.WithoutCancel(ctx))
			go l.keepAlive(kctx)
			return l, nil
		}
		if !cerrdefs.IsConflict(err) && !cerrdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("take deploy lock: %w", err)
		}
		held, err := d.LockStatus(ctx, stack)
		if err != nil {
			return nil, err
		}
		if held == nil {
			continue // released between our create and our look
		}
		stale, err := d.staleOnManager(ctx, held, now)
		if err != nil {
			return nil, err
		}
		if stale {
			d.progress().Warn("lock held by %s since %s is older than its TTL %s: taking it over", held.Owner, held.Since.UTC().Format(time.RFC3339), held.TTL)
			if err := d.removeLock(ctx, held.id); err != nil {
				return nil, err
			}
			continue
		}
		if !now.Before(deadline) {
			return nil, &LockHeldError{Lock: *held}
		}
		if !announced {
			d.progress().Info("stack %s is locked by %s (%s); waiting up to %s", stack, held.Owner, held.Reason, wait)
			announced = true
		}
		if err := d.clock().Sleep(ctx, min(d.poll(), deadline.Sub(now))); err != nil {
			return nil, err
		}
	}
}

// LockStatus returns the stack's lock, or nil when it is free.
func (d *Deployer) LockStatus(ctx context.Context, stack string) (*LockInfo, error) {
	res, err := d.Docker.ConfigList(ctx, client.ConfigListOptions{Filters: make(client.Filters).Add("name", lockPrefix+stack)})
	if err != nil {
		return nil, fmt.Errorf("read deploy lock: %w", err)
	}
	for _, c := range res.Items {
		if c.Spec.Name != lockPrefix+stack { // the name filter matches prefixes
			continue
		}
		l := c.Spec.Labels
		info := LockInfo{Stack: stack, Owner: l[labelLockOwner], Reason: l[labelLockReason], id: c.ID}
		info.Since, _ = time.Parse(time.RFC3339Nano, l[labelLockSince])
		info.TTL, _ = time.ParseDuration(l[labelLockTTL])
		info.Renewed, _ = time.Parse(time.RFC3339Nano, l[labelLockRenewed])
		info.changed = c.Meta.CreatedAt
		if c.Meta.UpdatedAt.After(info.changed) {
			info.changed = c.Meta.UpdatedAt // a renewal
		}
		return &info, nil
	}
	return nil, nil
}

// ReleaseLock removes the stack's lock whoever holds it (for a dead deploy's lock).
func (d *Deployer) ReleaseLock(ctx context.Context, stack string) error {
	held, err := d.LockStatus(ctx, stack)
	if err != nil || held == nil {
		return err
	}
	return d.removeLock(ctx, held.id)
}

func (d *Deployer) removeLock(ctx context.Context, id string) error {
	if _, err := d.Docker.ConfigRemove(ctx, id, client.ConfigRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("release deploy lock: %w", err)
	}
	return nil
}

// keepAlive renews the lock every third of its TTL until Release.
func (l *Lock) keepAlive(ctx context.Context) {
	defer close(l.done)
	tick := l.d.clock().NewTicker(max(l.TTL/3, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
			err := l.renew(ctx)
			switch {
			case err == nil, ctx.Err() != nil:
			case cerrdefs.IsNotFound(err):
				l.d.progress().Warn("the deploy lock of %s was removed by someone else (lock release, or a takeover after its TTL)", l.Stack)
				return
			default:
				l.d.progress().Warn("renew deploy lock: %v", err)
			}
		}
	}
}

// Check fails unless the lock is still this deploy's. Renewal only warns when
// the lock is gone, so a deploy checks before each step that changes the stack:
// with the lock removed or taken over, two deploys could change it at once.
func (l *Lock) Check(ctx context.Context) error {
	_, err := l.d.Docker.ConfigInspect(ctx, l.id, client.ConfigInspectOptions{})
	if err == nil {
		return nil // a takeover removes our config: the one we created is still there
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("check that the deploy lock of %s is still this deploy's: %w", l.Stack, err)
	}
	holder, err := l.d.LockStatus(ctx, l.Stack)
	if err != nil {
		return fmt.Errorf("the deploy lock of %s is gone, and reading who holds it now failed: %w", l.Stack, err)
	}
	return &LockLostError{Stack: l.Stack, Holder: holder}
}

func (l *Lock) renew(ctx context.Context) error {
	ins, err := l.d.Docker.ConfigInspect(ctx, l.id, client.ConfigInspectOptions{})
	if err != nil {
		return err
	}
	spec := ins.Config.Spec
	spec.Labels[labelLockRenewed] = l.d.clock().Now().UTC().Format(time.RFC3339Nano)
	_, err = l.d.Docker.ConfigUpdate(ctx, l.id, client.ConfigUpdateOptions{Version: ins.Config.Version, Spec: spec})
	return err
}

// Release lets the lock go. It uses its own context so a cancelled deploy
// (Ctrl-C, CI timeout) still releases it.
func (l *Lock) Release() error {
	l.stop()
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := l.d.removeLock(ctx, l.id)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("release deploy lock of %s: timed out; run 'shoal lock release --stack %s'", l.Stack, l.Stack)
	}
	return err
}
