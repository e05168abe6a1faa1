package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoalci/shoal/internal/deploy"
	"github.com/shoalci/shoal/internal/deploy/deploytest"
)

// withSpec changes one service's spec in the stack a deploy loads.
func withSpec(service string, f func(*swarm.ServiceSpec)) func(*deploy.Options) {
	return func(o *deploy.Options) {
		for i := range o.Stack.Services {
			if o.Stack.Services[i].Name == service {
				f(&o.Stack.Services[i].Spec)
			}
		}
	}
}

// failingHealth makes a service's health check fail (the test app answers 500).
func failingHealth(spec *swarm.ServiceSpec) {
	spec.TaskTemplate.ContainerSpec.Env = append(spec.TaskTemplate.ContainerSpec.Env, "FAIL_HEALTH=1")
}

func (e *testEnv) rollback() ([]string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return e.deployer("tester").Rollback(ctx, e.stack, deploy.RollbackOptions{LockWait: time.Minute})
}

func (e *testEnv) wantEach(want map[string]string) {
	e.t.Helper()
	got := e.versions()
	for svc, v := range want {
		if got[svc] != v {
			e.t.Errorf("service %s is at version %q, want %q (all: %v)", svc, got[svc], v, got)
		}
	}
}

// After a deploy that failed on one service, Swarm's own rollback has cleared that
// service's previous spec, and shoal's rollback of the others has made the failed
// version their previous spec. 'shoal rollback' must not take them to it: the deploy
// before the current one is out of reach, so it refuses and changes nothing.
func TestRollbackAfterFailedDeploy(t *testing.T) {
	e := setup(t, "shoalrbfail")
	for _, v := range []string{"proxy", "v1", "v2", "v3"} {
		e.image(v, nil)
	}
	for _, v := range []string{"v1", "v2"} {
		if _, err := e.deploy(v, nil); err != nil {
			t.Fatalf("deploy %s: %v", v, err)
		}
	}
	// v3's web never becomes healthy; its api and worker would.
	_, err := e.deploy("v3", withSpec("web", failingHealth))
	var de *deploy.DeployError
	if !errors.As(err, &de) {
		t.Fatalf("deploy v3 (web's health check failing): got %v, want a DeployError", err)
	}
	e.wantVersions("v2")
	e.out.reset()

	_, err = e.rollback()
	out := e.out.reset()
	e.wantVersions("v2")
	if err == nil {
		t.Fatalf("rollback after the failed v3 went ahead; want a refusal (output:\n%s)", out)
	}
	t.Logf("rollback refused:\n%v", err)
	if strings.Contains(out, "→ v3") {
		t.Errorf("rollback moved services to the failed v3:\n%s", out)
	}
	if msg := err.Error(); !strings.Contains(msg, "shoal deploy") || !strings.Contains(msg, "nothing was changed") {
		t.Errorf("refusal does not say that nothing changed and to deploy the wanted version: %v", err)
	}

	// Deploying the wanted version, as the refusal says, makes rollback work again.
	if _, err := e.deploy("v1", nil); err != nil {
		t.Fatalf("deploy v1: %v", err)
	}
	rolled, err := e.rollback()
	if err != nil {
		t.Fatalf("rollback of v1: %v", err)
	}
	if len(rolled) != 3 {
		t.Errorf("rolled back %v, want the 3 services v1 changed", rolled)
	}
	deploytest.WaitServing(t, e.url(), "version=v2", 10*time.Second)
	e.wantVersions("v2")
}

// A deploy that changed one service, rolled back: only that service goes back.
// Rolled back again, the stack's previous deploy is out of reach for that service
// (its previous spec is the version just left) while the others could go further
// back: going ahead would mix versions or go forward, so shoal refuses.
func TestRollbackTwiceAfterPartialDeploy(t *testing.T) {
	e := setup(t, "shoalrbtwice")
	for _, v := range []string{"proxy", "v1", "v2"} {
		e.image(v, nil)
	}
	for _, v := range []string{"v1", "v2"} {
		if _, err := e.deploy(v, nil); err != nil {
			t.Fatalf("deploy %s: %v", v, err)
		}
	}
	// v2b changes api only.
	_, err := e.deploy("v2", func(o *deploy.Options) {
		o.Version = "v2b"
		withSpec("api", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.ContainerSpec.Env = append(s.TaskTemplate.ContainerSpec.Env, "EXTRA=1")
		})(o)
	})
	if err != nil {
		t.Fatalf("deploy v2b: %v", err)
	}
	e.wantEach(map[string]string{"api": "v2b", "web": "v2", "worker": "v2"})

	rolled, err := e.rollback()
	if err != nil {
		t.Fatalf("rollback of v2b: %v", err)
	}
	if strings.Join(rolled, ",") != e.stack+"_api" {
		t.Errorf("rolled back %v, want only %s_api, the one service v2b changed", rolled, e.stack)
	}
	e.wantVersions("v2")
	e.out.reset()

	_, err = e.rollback()
	out := e.out.reset()
	e.wantVersions("v2")
	if err == nil {
		t.Fatalf("second rollback went ahead; want a refusal (output:\n%s)", out)
	}
	t.Logf("second rollback refused:\n%v", err)
	if !strings.Contains(err.Error(), e.stack+"_api") {
		t.Errorf("refusal does not name %s_api, the service whose previous version is newer: %v", e.stack, err)
	}
}

// A service whose rollback pauses after a failed deploy is named in the deploy's
// error as not rolled back, with what to run. worker's previous version publishes a
// host port that the test takes as soon as the new version frees it, so Swarm can
// not start worker's old tasks again.
func TestDeployErrorNamesServicesNotRolledBack(t *testing.T) {
	e := setup(t, "shoalrbpause")
	for _, v := range []string{"proxy", "v1", "v2"} {
		e.image(v, nil)
	}
	port := deploytest.FreePort(t)
	publish := func(s *swarm.ServiceSpec) {
		s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{
			Protocol: network.TCP, TargetPort: 8000, PublishedPort: uint32(port), PublishMode: swarm.PortConfigPublishModeHost,
		}}}
	}
	if _, err := e.deploy("v1", withSpec("worker", publish)); err != nil {
		t.Fatalf("deploy v1: %v", err)
	}

	var (
		mu    sync.Mutex
		taken net.Listener
	)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port)); err == nil {
				mu.Lock()
				taken = l
				mu.Unlock()
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		mu.Lock()
		defer mu.Unlock()
		if taken != nil {
			taken.Close()
		}
	})

	// v2: worker no longer publishes the port; web fails its health check late
	// (15 retries), after worker's v1 task has stopped and the test has the port.
	_, err := e.deploy("v2", func(o *deploy.Options) {
		withSpec("web", func(s *swarm.ServiceSpec) {
			failingHealth(s)
			s.TaskTemplate.ContainerSpec.Healthcheck.Retries = 15
		})(o)
	})
	mu.Lock()
	got := taken != nil
	mu.Unlock()
	if !got {
		t.Fatalf("the test never took port %d from worker's v1 task; deploy: %v", port, err)
	}
	var de *deploy.DeployError
	if !errors.As(err, &de) {
		t.Fatalf("deploy v2 (web failing): got %v, want a DeployError", err)
	}
	t.Logf("deploy v2 error:\n%v", err)
	worker := e.stack + "_worker"
	msg := err.Error()
	if !strings.Contains(msg, "NOT rolled back: "+worker) {
		t.Errorf("error does not name %s as not rolled back:\n%s", worker, msg)
	}
	if !strings.Contains(msg, "docker service ps "+worker) {
		t.Errorf("error does not say to look at 'docker service ps %s':\n%s", worker, msg)
	}
	for _, line := range strings.Split(msg, "\n") {
		if strings.Contains(line, "rolled back to the previous version:") && strings.Contains(line, worker) {
			t.Errorf("error counts %s as rolled back: %s", worker, line)
		}
	}
}
