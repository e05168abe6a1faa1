package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shoalci/shoal/internal/deploy"
	"github.com/shoalci/shoal/internal/deploy/stack"
	"github.com/shoalci/shoal/internal/sshdocker"
	"github.com/shoalci/shoal/internal/sshdocker/sshdtest"
)

// lossy is an Engine API transport over SSH that can lose the answer of one
// request after the manager has handled it, as a connection dropped
// mid-request does, and then, optionally, lose the connection for good.
type lossy struct {
	base http.RoundTripper
	mu   sync.Mutex
	// drop picks the request whose answer is lost (once).
	drop func(r *http.Request, body []byte) bool
	// thenDown makes every request after the dropped one fail unsent.
	thenDown bool
	down     bool
	dropped  bool
}

func (l *lossy) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	l.mu.Lock()
	down := l.down
	drop := !down && l.drop != nil && l.drop(r, body)
	if drop {
		l.drop, l.dropped, l.down = nil, true, l.thenDown
	}
	l.mu.Unlock()
	if down {
		return nil, fmt.Errorf("%w (test: connection down)", sshdocker.ErrConnectionLost)
	}
	res, err := l.base.RoundTrip(r)
	if err != nil || !drop {
		return res, err
	}
	// The manager has answered: it handled the request. Lose the answer.
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return nil, fmt.Errorf("%w (test: answer of %s %s dropped)", sshdocker.ErrConnectionLost, r.Method, r.URL.Path)
}

func (l *lossy) wasDropped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// lossyDeployer is a deployer whose requests go over its own SSH connection
// through l.
func (e *testEnv) lossyDeployer(l *lossy) *deploy.Deployer {
	e.t.Helper()
	srv := sshdtest.Start(e.t)
	conn, err := sshdocker.Dial(context.Background(), sshdocker.Config{Host: srv.Host, IdentityFile: srv.IdentityFile, KnownHostsFile: srv.KnownHostsFile})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	l.base = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return conn.DialSocket(ctx) }}
	cli, err := client.New(client.WithHost("unix:///var/run/docker.sock"), client.WithHTTPClient(&http.Client{Transport: l}))
	if err != nil {
		e.t.Fatal(err)
	}
	d := e.deployer("tester")
	d.Docker = cli
	return d
}

func (e *testEnv) deployWith(d *deploy.Deployer, tag string) error {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err := d.Deploy(ctx, deploy.Options{Stack: e.load(tag), Version: tag, Reason: "test deploy of " + tag, LockWait: time.Minute, HookDir: "testdata"})
	return err
}

// A create or update whose answer is lost after the manager applied it (a
// dropped SSH connection, a cancelled request) changed the service: the failed
// deploy must return it with the others, not take the error for a refusal.
// When the service cannot even be read back, the error says its state is
// unknown and what to run.
func TestLostAnswerIsRolledBack(t *testing.T) {
	e := setup(t, "shoallostanswer")
	for _, v := range []string{"proxy", "v1", "v2"} {
		e.image(v, nil)
	}
	worker := e.stack + "_worker"

	// 1. The create of worker is applied, its answer lost: worker is removed
	// with the other services this deploy created.
	l := &lossy{drop: func(r *http.Request, body []byte) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/services/create") && bytes.Contains(body, []byte(`"Name":"`+worker+`"`))
	}}
	err := e.deployWith(e.lossyDeployer(l), "v1")
	if !l.wasDropped() {
		t.Fatalf("the create of %s was never sent; deploy: %v", worker, err)
	}
	var de *deploy.DeployError
	if !errors.As(err, &de) || !errors.Is(err, sshdocker.ErrConnectionLost) {
		t.Fatalf("deploy v1 with the create's answer lost: got %v, want a DeployError for the lost connection", err)
	}
	t.Logf("deploy v1 error:\n%v", err)
	if msg := err.Error(); !strings.Contains(msg, "service "+worker+": create applied by the manager, but its answer was lost") {
		t.Errorf("error does not say worker's create was applied though its answer was lost:\n%s", msg)
	}
	left, err := e.local.ServiceList(context.Background(), client.ServiceListOptions{Filters: make(client.Filters).Add("label", stack.LabelNamespace+"="+e.stack)})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range left.Items {
		t.Errorf("service %s left behind by the failed first deploy", s.Spec.Name)
	}

	// 2. The update of worker is applied, its answer lost: worker is rolled back
	// with api and web, updated before it (services go in name order).
	if _, err := e.deploy("v1", nil); err != nil {
		t.Fatalf("deploy v1: %v", err)
	}
	ins, err := e.local.ServiceInspect(context.Background(), worker, client.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updateOfWorker := func(r *http.Request, _ []byte) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/services/"+ins.Service.ID+"/update") && r.URL.Query().Get("rollback") == ""
	}
	l = &lossy{drop: updateOfWorker}
	err = e.deployWith(e.lossyDeployer(l), "v2")
	if !errors.As(err, &de) || !l.wasDropped() {
		t.Fatalf("deploy v2 with the update's answer lost: got %v (dropped: %v), want a DeployError", err, l.wasDropped())
	}
	t.Logf("deploy v2 error:\n%v", err)
	if msg := err.Error(); !strings.Contains(msg, "service "+worker+": update applied by the manager, but its answer was lost") {
		t.Errorf("error does not say worker's update was applied though its answer was lost:\n%s", msg)
	}
	if got := strings.Join(de.RolledBack, ","); got != e.stack+"_api,"+e.stack+"_web,"+worker {
		t.Errorf("rolled back %v, want api, web (updated before worker) and worker", de.RolledBack)
	}
	e.wantVersions("v1")

	// 3. The connection is lost for good with the update's answer: worker's
	// state is unknown, and the error says so and what to run.
	l = &lossy{drop: updateOfWorker, thenDown: true}
	err = e.deployWith(e.lossyDeployer(l), "v2")
	if !errors.As(err, &de) || !l.wasDropped() {
		t.Fatalf("deploy v2 with the connection lost: got %v (dropped: %v), want a DeployError", err, l.wasDropped())
	}
	t.Logf("deploy v2 error, connection lost:\n%v", err)
	msg := err.Error()
	for _, want := range []string{
		"NOT rolled back: " + worker + " (unknown: the update was sent but its answer was lost",
		"run 'shoal status --stack " + e.stack + "': if " + worker + " shows this deploy's version (v2), 'docker service rollback " + worker + "' returns it",
		"the stack is mixed",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
}
