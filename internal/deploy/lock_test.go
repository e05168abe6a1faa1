package deploy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/deploy"
	"github.com/shoalci/shoal/internal/deploy/deploytest"
	"github.com/shoalci/shoal/internal/deploy/stack"
)

// A deploy whose lock is taken over or removed while its release task runs
// stops before any service changes, naming who holds the lock now: otherwise
// two deploys would change the stack at once.
func TestDeployStopsWhenItsLockIsLost(t *testing.T) {
	e := setup(t, "shoallocklost")
	e.image("proxy", nil)
	e.image("v1", nil)
	e.image("v2", map[string]string{"RELEASE_SLEEP": "4s"})
	if _, err := e.deploy("v1", nil); err != nil {
		t.Fatalf("deploy v1: %v", err)
	}

	// whileReleasing runs f once v2's release task runs.
	whileReleasing := func(f func()) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 200 {
				l, err := e.local.ServiceList(context.Background(), client.ServiceListOptions{Filters: make(client.Filters).
					Add("label", deploy.LabelRelease).Add("label", stack.LabelNamespace+"="+e.stack)})
				if err == nil && len(l.Items) > 0 {
					f()
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Errorf("the release task never started")
		}()
		return done
	}
	ctx := context.Background()

	// 1. Taken over (as 'shoal lock release' and another deploy would).
	var mallory *deploy.Lock
	done := whileReleasing(func() {
		if err := e.deployer("x").ReleaseLock(ctx, e.stack); err != nil {
			t.Error(err)
			return
		}
		var err error
		if mallory, err = e.deployer("mallory").AcquireLock(ctx, e.stack, "mallory's hotfix", 0, time.Minute); err != nil {
			t.Error(err)
		}
	})
	_, err := e.deploy("v2", nil)
	<-done
	if mallory == nil {
		t.Fatalf("the lock was not taken over; deploy: %v", err)
	}
	var lost *deploy.LockLostError
	if !errors.As(err, &lost) || lost.Holder == nil || lost.Holder.Owner != "mallory" {
		t.Fatalf("deploy v2 with its lock taken over: got %v, want a LockLostError naming mallory", err)
	}
	t.Logf("deploy v2 error, lock taken over:\n%v", err)
	if msg := err.Error(); !strings.Contains(msg, "mallory holds it") || !strings.Contains(msg, "mallory's hotfix") || !strings.Contains(msg, "no service was changed") {
		t.Errorf("error does not name the new holder and say nothing changed:\n%s", msg)
	}
	e.wantVersions("v1")
	if l, err := e.deployer("x").LockStatus(ctx, e.stack); err != nil || l == nil || l.Owner != "mallory" {
		t.Errorf("lock after the stopped deploy = %+v, %v; want still mallory's", l, err)
	}
	if err := mallory.Release(); err != nil {
		t.Fatal(err)
	}

	// 2. Removed.
	done = whileReleasing(func() {
		if err := e.deployer("x").ReleaseLock(ctx, e.stack); err != nil {
			t.Error(err)
		}
	})
	_, err = e.deploy("v2", nil)
	<-done
	if !errors.As(err, &lost) || lost.Holder != nil || !strings.Contains(err.Error(), "was removed") {
		t.Fatalf("deploy v2 with its lock removed: got %v, want a LockLostError saying it was removed", err)
	}
	e.wantVersions("v1")
}

// skewed is a machine clock that is off by a fixed amount.
type skewed struct {
	clock.Real
	by time.Duration
}

func (s skewed) Now() time.Time                  { return time.Now().Add(s.by) }
func (s skewed) Since(t time.Time) time.Duration { return s.Now().Sub(t) }

// Whether a lock is stale is judged by the manager's clock, not by the clocks
// of the machines that deploy: a deployer whose clock runs ahead must not take
// over a live lock, and a dead holder whose clock ran ahead must not keep its
// lock for ever.
func TestLockStalenessUsesTheManagersClock(t *testing.T) {
	local := deploytest.LocalDocker(t)
	deploytest.EnsureSwarm(t, local)
	const stackName = "shoallockskew"
	ctx := context.Background()
	deployer := func(who string, skew time.Duration) *deploy.Deployer {
		return &deploy.Deployer{Docker: local, Performer: who, Clock: skewed{by: skew}, PollInterval: 100 * time.Millisecond}
	}
	_ = deployer("x", 0).ReleaseLock(ctx, stackName)
	t.Cleanup(func() { _ = deployer("x", 0).ReleaseLock(ctx, stackName) })

	// 1. A live lock, seen from a machine two hours ahead.
	live, err := deployer("erin", 0).AcquireLock(ctx, stackName, "long deploy", 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var held *deploy.LockHeldError
	if _, err := deployer("frank", 2*time.Hour).AcquireLock(ctx, stackName, "clock ahead", 0, time.Minute); !errors.As(err, &held) || held.Lock.Owner != "erin" {
		t.Errorf("taking a live lock from a machine whose clock is 2h ahead: got %v, want it held by erin", err)
	}
	if err := live.Release(); err != nil {
		t.Fatal(err)
	}

	// 2. A dead holder (its job was killed) whose clock was two hours ahead.
	_, err = local.ConfigCreate(ctx, client.ConfigCreateOptions{Spec: swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: "shoal-lock-" + stackName, Labels: map[string]string{
			"io.shoal.lock.owner":  "ghost",
			"io.shoal.lock.reason": "killed job",
			"io.shoal.lock.since":  time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339Nano),
			"io.shoal.lock.ttl":    "1s",
		}},
		Data: []byte("ghost\n"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	l, err := deployer("frank", 0).AcquireLock(ctx, stackName, "after the ghost", 0, time.Minute)
	if err != nil {
		t.Fatalf("taking over a lock not renewed for longer than its TTL (by the manager's clock): %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}
