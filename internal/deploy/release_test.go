package deploy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoalci/shoal/internal/deploy"
	"github.com/shoalci/shoal/internal/deploy/deploytest"
	"github.com/shoalci/shoal/internal/deploy/stack"
)

// A release task that outlives its timeout is left to finish (a migration
// cut off half way is worse than a late one): the deploy fails, changes no
// service and says where the task runs; a deploy meanwhile refuses to start
// another release task; once it has ended, the next deploy goes ahead.
func TestReleaseTaskPastItsTimeoutIsLeftToFinish(t *testing.T) {
	e := setup(t, "shoaltestslowrelease")
	e.image("proxy", nil)
	e.image("v1", nil)
	e.image("v2", map[string]string{"RELEASE_SLEEP": "12s"})
	if _, err := e.deploy("v1", nil); err != nil {
		t.Fatalf("deploy v1: %v", err)
	}
	deploytest.WaitServing(t, e.url(), "version=v1", 30*time.Second)

	_, err := e.deploy("v2", func(o *deploy.Options) { o.Stack.Shoal.Release[0].Timeout = stack.Duration(2 * time.Second) })
	if err == nil || !strings.Contains(err.Error(), "left to finish, as service "+e.stack+"_release-1-") {
		t.Fatalf("deploy v2 with a release task past its timeout: %v; want it left to finish, and named", err)
	}
	e.wantVersions("v1")
	jobs := func() []swarm.Service {
		l, err := e.local.ServiceList(context.Background(), client.ServiceListOptions{Filters: make(client.Filters).
			Add("label", deploy.LabelRelease).Add("label", stack.LabelNamespace+"="+e.stack)})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	if n := len(jobs()); n != 1 {
		t.Fatalf("%d release job services after the timeout, want the one still running", n)
	}

	if _, err := e.deploy("v2", nil); err == nil || !strings.Contains(err.Error(), "of an earlier deploy is still running") {
		t.Fatalf("deploy v2 while the earlier release task runs: %v; want it refused", err)
	}
	e.wantVersions("v1")

	// The task ends (it sleeps 12 s); then v2 goes out, its own task run anew.
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		tasks, err := e.local.TaskList(context.Background(), client.TaskListOptions{Filters: make(client.Filters).Add("service", jobs()[0].ID)})
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks.Items) > 0 && tasks.Items[0].Status.State == swarm.TaskStateComplete {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the release task left running never completed: %+v", tasks.Items)
		}
	}
	e.out.reset()
	if _, err := e.deploy("v2", nil); err != nil {
		t.Fatalf("deploy v2 once the earlier release task ended: %v", err)
	}
	if out := e.out.reset(); strings.Contains(out, "no longer has") {
		t.Errorf("the earlier release task's service was taken for one the stack file no longer has:\n%s", out)
	}
	e.wantVersions("v2")
	if n := len(jobs()); n != 0 {
		t.Errorf("%d release job services left behind", n)
	}
}
