// Package deploy puts a compose stack on a Docker Swarm through the Docker Engine
// API: a deploy lock kept in the Swarm, release tasks run to completion from the new
// images before anything long-running changes, start-first rolling updates watched
// until every task is running and healthy, and a rollback when any of it fails.
package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/deploy/stack"
)

// Labels shoal keeps on each service: its record of the last deploy.
const (
	LabelVersion    = "io.shoal.version"
	LabelDeployedBy = "io.shoal.deployed-by"
	LabelDeployedAt = "io.shoal.deployed-at"
	LabelSpecHash   = "io.shoal.spec-hash"
	// LabelDeployID is the same on every service a deploy changed: 'shoal rollback'
	// rolls back exactly those.
	LabelDeployID = "io.shoal.deploy-id"
)

// Deployer acts on one Swarm through its manager's Engine API.
type Deployer struct {
	Docker *client.Client
	// Progress receives step-by-step output; plain lines to io.Discard when nil.
	Progress Progress
	Clock    clock.Clock
	// Host is the manager's address, for messages and hook variables.
	Host string
	// Performer is who deploys (GitLab user, or user@machine); recorded in labels and the lock.
	Performer string
	// Registry is the credential sent with the creates and updates of the
	// services whose images are on its registry, so that the nodes can pull
	// them; nil for public images.
	Registry *RegistryAuth
	// PollInterval is how often rollout state is read (default 500ms).
	PollInterval time.Duration
}

func (d *Deployer) clock() clock.Clock {
	if d.Clock == nil {
		return clock.Real{}
	}
	return d.Clock
}

func (d *Deployer) progress() Progress {
	if d.Progress == nil {
		d.Progress = &plain{w: discard{}, last: map[string]ServiceState{}}
	}
	return d.Progress
}

func (d *Deployer) poll() time.Duration {
	if d.PollInterval == 0 {
		return 500 * time.Millisecond
	}
	return d.PollInterval
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Options for one deploy.
type Options struct {
	Stack    *stack.Stack
	Version  string        // recorded on the services; the image tag, typically
	Reason   string        // shown to whoever finds the lock held
	LockWait time.Duration // how long to wait for another deploy's lock
	LockTTL  time.Duration // after which a lock is considered abandoned
	DryRun   bool          // print the plan, change nothing
	Force    bool          // roll every service even when its spec is unchanged
	// Timeout bounds waiting for the services to converge (default: x-shoal.timeout, else 10m).
	Timeout time.Duration
	// HookDir is the directory hooks run in (the stack file's).
	HookDir string
}

// Action is what a deploy does to one service.
type Action string

const (
	ActionCreate    Action = "create"
	ActionUpdate    Action = "update"
	ActionUnchanged Action = "unchanged"
)

// Change is one service's part of the plan.
type Change struct {
	Service  stack.Service
	Action   Action
	Current  *swarm.Service // nil when creating
	Diff     []string       // what differs, for people
	specHash string
}

// Plan is everything a deploy would do.
type Plan struct {
	Stack       *stack.Stack
	Changes     []Change
	NewNetworks []stack.Network
	NewConfigs  []stack.Object
	NewSecrets  []stack.Object
	// Orphans are services of the stack on the cluster that the file no longer has.
	Orphans []string
}

// Changed reports whether any service would be created or updated.
func (p *Plan) Changed() bool {
	for _, c := range p.Changes {
		if c.Action != ActionUnchanged {
			return true
		}
	}
	return false
}

// Result summarises a finished deploy.
type Result struct {
	Plan     *Plan
	Duration time.Duration
}

// ServiceFailure is a service whose rollout failed, with what its tasks said.
type ServiceFailure struct {
	Service    string
	State      string // rollback_completed, paused, timeout...
	TaskError  string
	LogTail    []string
	RolledBack bool
}

// DeployError is a failed rollout: what failed, what shoal did about it, what to do next.
type DeployError struct {
	Stack      string
	Failures   []ServiceFailure
	RolledBack []string // services returned to their previous spec
	// NotRolledBack are services this deploy changed that are not back where they
	// were: their rollback failed, paused or did not finish in time.
	NotRolledBack []LeftBehind
	Err           error
}

// LeftBehind is a service a failed deploy could not return to its previous spec.
type LeftBehind struct {
	Service string
	State   string // "still on the new version", "mid-rollback: rollback paused: ..."
	Next    string // what to run about it
}

func (e *DeployError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "deploy of %s failed", e.Stack)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "\n  service %s: %s", f.Service, f.State)
		if f.TaskError != "" {
			fmt.Fprintf(&b, ": %s", f.TaskError)
		}
		if len(f.LogTail) > 0 {
			fmt.Fprintf(&b, "\n    last log lines:")
			for _, l := range f.LogTail {
				fmt.Fprintf(&b, "\n    | %s", l)
			}
		}
	}
	if len(e.RolledBack) > 0 {
		fmt.Fprintf(&b, "\n  rolled back to the previous version: %s", strings.Join(e.RolledBack, ", "))
	}
	for _, l := range e.NotRolledBack {
		fmt.Fprintf(&b, "\n  NOT rolled back: %s (%s): %s", l.Service, l.State, l.Next)
	}
	first := ""
	if len(e.NotRolledBack) > 0 {
		// A mixed stack comes first: a new deploy on top of it hides what was running.
		first = "the stack is mixed until the services above are back (do that first); then "
	}
	fmt.Fprintf(&b, "\n  next: %sread the task error and logs above ('shoal logs --stack %s SERVICE'), fix, and deploy again; 'shoal status --stack %s' shows what is running", first, e.Stack, e.Stack)
	return b.String()
}

func (e *DeployError) Unwrap() error { return e.Err }

// Deploy puts the stack on the Swarm.
func (d *Deployer) Deploy(ctx context.Context, o Options) (*Result, error) {
	start := d.clock().Now()
	st := o.Stack
	p := d.progress()
	for _, w := range st.Warnings {
		p.Warn("%s", w)
	}

	p.Step("Connecting to the Swarm manager %s", d.Host)
	if err := d.CheckManager(ctx); err != nil {
		return nil, err
	}

	if o.DryRun {
		plan, err := d.Plan(ctx, st, o.Force)
		if err != nil {
			return nil, err
		}
		PrintPlan(p, plan)
		return &Result{Plan: plan, Duration: d.clock().Since(start)}, nil
	}

	p.Step("Taking the deploy lock of stack %s", st.Name)
	lock, err := d.AcquireLock(ctx, st.Name, o.Reason, o.LockWait, o.LockTTL)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := lock.Release(); err != nil {
			p.Warn("%v", err)
		}
	}()

	// Plan under the lock: another deploy may have just changed the services.
	plan, err := d.Plan(ctx, st, o.Force)
	if err != nil {
		return nil, err
	}
	PrintPlan(p, plan)

	hookEnv := d.hookEnv(st, o)
	if err := runHooks(ctx, p, "pre-deploy", st.Shoal.Hooks.PreDeploy, o.HookDir, hookEnv); err != nil {
		return nil, fmt.Errorf("%w; nothing was changed on the cluster", err)
	}

	if !plan.Changed() {
		p.Step("Nothing to change: every service already runs this spec")
		if err := runHooks(ctx, p, "post-deploy", st.Shoal.Hooks.PostDeploy, o.HookDir, append(hookEnv, "SHOAL_RESULT=unchanged")); err != nil {
			return nil, err
		}
		return &Result{Plan: plan, Duration: d.clock().Since(start)}, nil
	}

	// The plan and the hooks may have taken a while: with the lock gone, another
	// deploy may be changing the stack, and this one must not add to it.
	if err := lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("%w\n  nothing was changed on the cluster by this deploy\n  next: 'shoal status --stack %s' shows what is running and who holds the lock; deploy again once that deploy has finished", err, st.Name)
	}
	if err := d.ensureObjects(ctx, plan); err != nil {
		return nil, err
	}
	if err := d.resolveRefs(ctx, st); err != nil {
		return nil, err
	}

	if len(st.Shoal.Release) > 0 {
		p.Step("Running %d release task(s) from the new images", len(st.Shoal.Release))
		if err := d.releasesDone(ctx, st.Name); err != nil {
			return nil, fmt.Errorf("%w\n  nothing was changed: the previous version is still serving", err)
		}
		for i, rt := range st.Shoal.Release {
			if err := d.runRelease(ctx, st, i, rt); err != nil {
				return nil, fmt.Errorf("%w\n  nothing else was changed: the previous version is still serving\n  next: fix the release task and deploy again; 'shoal status --stack %s' shows what is running", err, st.Name)
			}
		}
		// Release tasks can run long: check again before any service changes.
		if err := lock.Check(ctx); err != nil {
			return nil, fmt.Errorf("%w\n  the release tasks have run, but no service was changed by this deploy: the previous version is still serving\n  next: 'shoal status --stack %s' shows what is running and who holds the lock; deploy again once that deploy has finished (its release tasks run again)", err, st.Name)
		}
	}

	timeout := o.Timeout
	if timeout == 0 {
		timeout = time.Duration(st.Shoal.Timeout)
	}
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	// Fixed-width nanoseconds: the newest deploy sorts last.
	deployID := fmt.Sprintf("%020d", start.UnixNano())
	if err := d.rollout(ctx, plan, o, deployID, timeout); err != nil {
		var de *DeployError
		if errors.As(err, &de) {
			d.findLeftBehind(ctx, plan, deployID, de)
		}
		_ = runHooks(ctx, p, "post-deploy", st.Shoal.Hooks.PostDeploy, o.HookDir, append(hookEnv, "SHOAL_RESULT=failed"))
		return &Result{Plan: plan, Duration: d.clock().Since(start)}, err
	}
	d.prune(ctx, st)

	res := &Result{Plan: plan, Duration: d.clock().Since(start)}
	p.Step("Deployed %s version %s in %s", st.Name, orDash(o.Version), res.Duration.Round(100*time.Millisecond))
	if len(plan.Orphans) > 0 {
		p.Warn("services on the cluster that the stack file no longer has: %s (remove them with docker service rm)", strings.Join(plan.Orphans, ", "))
	}
	if err := runHooks(ctx, p, "post-deploy", st.Shoal.Hooks.PostDeploy, o.HookDir, append(hookEnv, "SHOAL_RESULT=deployed")); err != nil {
		return res, fmt.Errorf("%w (the deploy itself succeeded)", err)
	}
	return res, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// CheckManager fails unless the engine is an active Swarm manager.
func (d *Deployer) CheckManager(ctx context.Context) error {
	info, err := d.Docker.Info(ctx, client.InfoOptions{})
	if err != nil {
		return fmt.Errorf("docker info on %s: %w", d.Host, err)
	}
	sw := info.Info.Swarm
	switch {
	case sw.LocalNodeState != swarm.LocalNodeStateActive:
		return fmt.Errorf("%s is not in a Swarm (state %q): run 'docker swarm init' there, or point --host at a manager", d.Host, sw.LocalNodeState)
	case !sw.ControlAvailable:
		return fmt.Errorf("%s is a Swarm worker: point --host at a manager ('docker node ls' on a manager lists them)", d.Host)
	}
	return nil
}

// existing returns the stack's services on the cluster by full name.
func (d *Deployer) existing(ctx context.Context, stackName string) (map[string]swarm.Service, error) {
	res, err := d.Docker.ServiceList(ctx, client.ServiceListOptions{
		Filters: make(client.Filters).Add("label", stack.LabelNamespace+"="+stackName),
		Status:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("list services of %s: %w", stackName, err)
	}
	out := map[string]swarm.Service{}
	for _, s := range res.Items {
		out[s.Spec.Name] = s
	}
	return out, nil
}

// specHash fingerprints what the stack file asks of a service (before shoal's own labels).
func specHash(spec swarm.ServiceSpec) string {
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// Plan compares the stack with the cluster.
func (d *Deployer) Plan(ctx context.Context, st *stack.Stack, force bool) (*Plan, error) {
	cur, err := d.existing(ctx, st.Name)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Stack: st}
	for _, svc := range st.Services {
		c := Change{Service: svc, specHash: specHash(svc.Spec)}
		if s, ok := cur[svc.Spec.Name]; ok {
			s := s
			c.Current = &s
			c.Diff = diffSpecs(s.Spec, svc.Spec)
			switch {
			case force:
				c.Action = ActionUpdate
				c.Diff = append(c.Diff, "forced")
			case s.Spec.Labels[LabelSpecHash] == c.specHash:
				c.Action = ActionUnchanged
				c.Diff = nil
			default:
				c.Action = ActionUpdate
			}
		} else {
			c.Action = ActionCreate
		}
		plan.Changes = append(plan.Changes, c)
	}
	for name, s := range cur {
		if _, job := s.Spec.Labels[LabelRelease]; job {
			continue // a release task's, not the stack's: see releasesDone
		}
		if _, ok := st.Service(strings.TrimPrefix(name, st.Name+"_")); !ok {
			plan.Orphans = append(plan.Orphans, name)
		}
	}
	slices.Sort(plan.Orphans)

	nets, err := d.Docker.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	have := map[string]bool{}
	for _, n := range nets.Items {
		have[n.Name] = true
	}
	var missingExternal []string
	for _, n := range st.Networks {
		switch {
		case have[n.Name]:
		case n.External:
			missingExternal = append(missingExternal, n.Name)
		default:
			plan.NewNetworks = append(plan.NewNetworks, n)
		}
	}
	if len(missingExternal) > 0 {
		return nil, fmt.Errorf("external network(s) %s not found on the cluster: create them (docker network create -d overlay NAME) or drop external: true", strings.Join(missingExternal, ", "))
	}

	haveCfg, haveSec, err := d.objectNames(ctx)
	if err != nil {
		return nil, err
	}
	var missing, m []string
	plan.NewConfigs, missing = split(st.Configs, haveCfg, "config")
	plan.NewSecrets, m = split(st.Secrets, haveSec, "secret")
	missing = append(missing, m...)
	if len(missing) > 0 {
		return nil, fmt.Errorf("external %s not found on the cluster: create them first", strings.Join(missing, ", "))
	}
	return plan, nil
}

// objectNames lists the names of the Swarm's configs and secrets.
func (d *Deployer) objectNames(ctx context.Context) (configs, secrets map[string]bool, err error) {
	cfgs, err := d.Docker.ConfigList(ctx, client.ConfigListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list configs: %w", err)
	}
	secs, err := d.Docker.SecretList(ctx, client.SecretListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list secrets: %w", err)
	}
	configs, secrets = map[string]bool{}, map[string]bool{}
	for _, c := range cfgs.Items {
		configs[c.Spec.Name] = true
	}
	for _, s := range secs.Items {
		secrets[s.Spec.Name] = true
	}
	return configs, secrets, nil
}

// split sorts a stack's objects into those to create and external ones missing.
func split(objs []stack.Object, have map[string]bool, kind string) (create []stack.Object, missing []string) {
	for _, o := range objs {
		switch {
		case have[o.Name]:
		case o.External:
			missing = append(missing, kind+" "+o.Name)
		default:
			create = append(create, o)
		}
	}
	return create, missing
}

// diffSpecs names the differences a person cares about.
func diffSpecs(cur, want swarm.ServiceSpec) []string {
	var out []string
	cc, wc := cur.TaskTemplate.ContainerSpec, want.TaskTemplate.ContainerSpec
	if cc == nil || wc == nil {
		return []string{"container spec"}
	}
	if img := stripDigest(cc.Image); img != wc.Image {
		out = append(out, fmt.Sprintf("image %s → %s", img, wc.Image))
	}
	if !slices.Equal(cc.Env, wc.Env) {
		out = append(out, "environment")
	}
	if !slices.Equal(cc.Args, wc.Args) || !slices.Equal(cc.Command, wc.Command) {
		out = append(out, "command")
	}
	if r1, r2 := replicas(cur), replicas(want); r1 != r2 {
		out = append(out, fmt.Sprintf("replicas %d → %d", r1, r2))
	}
	if !jsonEqual(cc.Healthcheck, wc.Healthcheck) {
		out = append(out, "healthcheck")
	}
	if !jsonEqual(cc.Mounts, wc.Mounts) {
		out = append(out, "volumes")
	}
	if !slices.Equal(refNames(cc), refNames(wc)) {
		out = append(out, "configs/secrets")
	}
	if !jsonEqual(ports(cur.EndpointSpec), ports(want.EndpointSpec)) {
		out = append(out, "ports")
	}
	if !jsonEqual(aliases(cur.TaskTemplate.Networks), aliases(want.TaskTemplate.Networks)) {
		out = append(out, "networks")
	}
	if !jsonEqual(nonEmpty(cur.TaskTemplate.Resources), nonEmpty(want.TaskTemplate.Resources)) || !jsonEqual(nonEmpty(placement(cur.TaskTemplate.Placement)), nonEmpty(placement(want.TaskTemplate.Placement))) {
		out = append(out, "resources/placement")
	}
	if !jsonEqual(cur.UpdateConfig, want.UpdateConfig) || !jsonEqual(cur.RollbackConfig, want.RollbackConfig) {
		out = append(out, "update settings")
	}
	if len(out) == 0 {
		out = append(out, "labels or other settings")
	}
	return out
}

// The manager stores specs normalised (network names become IDs, empty structs
// appear): compare what a stack file can say.
func ports(e *swarm.EndpointSpec) []swarm.PortConfig {
	if e == nil {
		return nil
	}
	return e.Ports
}

// refNames lists config and secret references by name and target (the cluster's
// copy also has IDs).
func refNames(cs *swarm.ContainerSpec) []string {
	var out []string
	for _, r := range cs.Configs {
		if r.File != nil {
			out = append(out, "config "+r.ConfigName+" "+r.File.Name)
		}
	}
	for _, r := range cs.Secrets {
		if r.File != nil {
			out = append(out, "secret "+r.SecretName+" "+r.File.Name)
		}
	}
	return out
}

// placement without the platforms the client fills in from the image's manifest.
func placement(p *swarm.Placement) *swarm.Placement {
	if p == nil {
		return nil
	}
	c := *p
	c.Platforms = nil
	return &c
}

func aliases(ns []swarm.NetworkAttachmentConfig) [][]string {
	var out [][]string
	for _, n := range ns {
		out = append(out, n.Aliases)
	}
	return out
}

// nonEmpty is nil for a value that marshals to an empty JSON object.
func nonEmpty(v any) any {
	b, _ := json.Marshal(v)
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		for k, x := range m {
			if xm, ok := x.(map[string]any); ok && len(xm) == 0 {
				delete(m, k)
			}
		}
		if len(m) == 0 {
			return nil
		}
		return m
	}
	return v
}

func stripDigest(image string) string {
	if i := strings.Index(image, "@sha256:"); i >= 0 {
		return image[:i]
	}
	return image
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func replicas(s swarm.ServiceSpec) uint64 {
	if s.Mode.Replicated != nil && s.Mode.Replicated.Replicas != nil {
		return *s.Mode.Replicated.Replicas
	}
	return 0
}

// PrintPlan shows the plan service by service.
func PrintPlan(p Progress, plan *Plan) {
	p.Step("Plan for stack %s", plan.Stack.Name)
	for _, n := range plan.NewNetworks {
		p.Info("network %s: create", n.Name)
	}
	for _, o := range plan.NewConfigs {
		p.Info("config %s: create", o.Name)
	}
	for _, o := range plan.NewSecrets {
		p.Info("secret %s: create", o.Name)
	}
	for _, c := range plan.Changes {
		switch c.Action {
		case ActionCreate:
			p.Info("service %s: create (%s)", c.Service.Spec.Name, c.Service.Spec.TaskTemplate.ContainerSpec.Image)
		case ActionUpdate:
			p.Info("service %s: update: %s", c.Service.Spec.Name, strings.Join(c.Diff, ", "))
		default:
			p.Info("service %s: unchanged", c.Service.Spec.Name)
		}
	}
	if plan.Changed() {
		for _, rt := range plan.Stack.Shoal.Release {
			p.Info("release task: %s on %s's new image", strings.Join(rt.Command, " "), rt.Service)
		}
	}
	for _, o := range plan.Orphans {
		p.Info("service %s: on the cluster but not in the stack file (left alone)", o)
	}
}

// ensureObjects creates the networks, configs and secrets the services need.
func (d *Deployer) ensureObjects(ctx context.Context, plan *Plan) error {
	for _, n := range plan.NewNetworks {
		_, err := d.Docker.NetworkCreate(ctx, n.Name, client.NetworkCreateOptions{
			Driver: n.Driver, Scope: "swarm", Internal: n.Internal, Attachable: n.Attachable,
			Options: n.Options, Labels: n.Labels,
		})
		if err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsAlreadyExists(err) {
			return fmt.Errorf("create network %s: %w; nothing else was changed", n.Name, err)
		}
		d.progress().Info("created network %s", n.Name)
	}
	for _, o := range plan.NewConfigs {
		_, err := d.Docker.ConfigCreate(ctx, client.ConfigCreateOptions{Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: o.Name, Labels: o.Labels}, Data: o.Data}})
		if err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsAlreadyExists(err) {
			return fmt.Errorf("create config %s: %w", o.Name, err)
		}
	}
	for _, o := range plan.NewSecrets {
		_, err := d.Docker.SecretCreate(ctx, client.SecretCreateOptions{Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: o.Name, Labels: o.Labels}, Data: o.Data}})
		if err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsAlreadyExists(err) {
			return fmt.Errorf("create secret %s: %w", o.Name, err)
		}
	}
	return nil
}

// resolveRefs fills in the IDs of the configs and secrets the services refer to
// by name: Swarm wants both. The stack's specs share these references with the
// plan, so both see the IDs.
func (d *Deployer) resolveRefs(ctx context.Context, st *stack.Stack) error {
	cfgs, err := d.Docker.ConfigList(ctx, client.ConfigListOptions{})
	if err != nil {
		return fmt.Errorf("list configs: %w", err)
	}
	secs, err := d.Docker.SecretList(ctx, client.SecretListOptions{})
	if err != nil {
		return fmt.Errorf("list secrets: %w", err)
	}
	cfgID, secID := map[string]string{}, map[string]string{}
	for _, c := range cfgs.Items {
		cfgID[c.Spec.Name] = c.ID
	}
	for _, s := range secs.Items {
		secID[s.Spec.Name] = s.ID
	}
	for _, svc := range st.Services {
		cs := svc.Spec.TaskTemplate.ContainerSpec
		for _, r := range cs.Configs {
			if r.ConfigID = cfgID[r.ConfigName]; r.ConfigID == "" {
				return fmt.Errorf("service %s: config %s not found on the cluster", svc.Name, r.ConfigName)
			}
		}
		for _, r := range cs.Secrets {
			if r.SecretID = secID[r.SecretName]; r.SecretID == "" {
				return fmt.Errorf("service %s: secret %s not found on the cluster", svc.Name, r.SecretName)
			}
		}
	}
	return nil
}

// withRecord adds shoal's deploy record to a spec.
func (d *Deployer) withRecord(spec swarm.ServiceSpec, hash, version, deployID string) swarm.ServiceSpec {
	spec.Labels = maps.Clone(spec.Labels)
	spec.Labels[LabelDeployID] = deployID
	spec.Labels[LabelSpecHash] = hash
	spec.Labels[LabelVersion] = version
	spec.Labels[LabelDeployedBy] = d.Performer
	spec.Labels[LabelDeployedAt] = d.clock().Now().UTC().Format(time.RFC3339)
	return spec
}

// prune removes the stack's configs and secrets that neither the stack file nor
// any service's current or previous spec uses (older content versions). The
// previous specs count: 'shoal rollback' and Swarm's own rollback return to them.
func (d *Deployer) prune(ctx context.Context, st *stack.Stack) {
	keep := map[string]bool{}
	for _, o := range slices.Concat(st.Configs, st.Secrets) {
		keep[o.Name] = true
	}
	cur, err := d.existing(ctx, st.Name)
	if err != nil {
		return
	}
	for _, s := range cur {
		for _, spec := range []*swarm.ServiceSpec{&s.Spec, s.PreviousSpec} {
			if spec == nil || spec.TaskTemplate.ContainerSpec == nil {
				continue
			}
			for _, c := range spec.TaskTemplate.ContainerSpec.Configs {
				keep[c.ConfigName] = true
			}
			for _, c := range spec.TaskTemplate.ContainerSpec.Secrets {
				keep[c.SecretName] = true
			}
		}
	}
	f := make(client.Filters).Add("label", stack.LabelNamespace+"="+st.Name)
	if cfgs, err := d.Docker.ConfigList(ctx, client.ConfigListOptions{Filters: f}); err == nil {
		for _, c := range cfgs.Items {
			if !keep[c.Spec.Name] {
				_, _ = d.Docker.ConfigRemove(ctx, c.ID, client.ConfigRemoveOptions{})
			}
		}
	}
	if secs, err := d.Docker.SecretList(ctx, client.SecretListOptions{Filters: f}); err == nil {
		for _, s := range secs.Items {
			if !keep[s.Spec.Name] {
				_, _ = d.Docker.SecretRemove(ctx, s.ID, client.SecretRemoveOptions{})
			}
		}
	}
}

// ErrTimeout is a rollout that did not converge within the deploy's timeout.
var ErrTimeout = errors.New("timed out waiting for the services to converge (raise --timeout or x-shoal.timeout if they are only slow)")
