package stack

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
)

// Labels docker stack uses; keeping them makes `docker stack ls/ps/services` work.
const (
	LabelNamespace = "com.docker.stack.namespace"
	LabelImage     = "com.docker.stack.image"
)

// Service is one Swarm service of the stack.
type Service struct {
	Name string // short name, as in the stack file
	Spec swarm.ServiceSpec
}

// Network is an overlay network the stack uses.
type Network struct {
	Name     string // full name on the cluster
	External bool
	Driver   string
	Options  map[string]string
	Labels   map[string]string
	Internal bool
	// Attachable lets one-off containers join; release tasks don't need it.
	Attachable bool
	Key        string // name in the stack file
}

// Object is a Swarm config or secret the stack creates. Its name carries a hash of
// its content: Swarm configs are immutable, so a changed file becomes a new object
// and the services roll over to it.
type Object struct {
	Key      string // name in the stack file
	Name     string // name on the cluster
	Data     []byte
	Labels   map[string]string
	External bool
}

func scope(stack, name string) string { return stack + "_" + name }

func convert(stack string, p *types.Project) (*Stack, error) {
	st := &Stack{Name: stack}
	var errs []error

	// Networks: every service without networks joins <stack>_default.
	used := map[string]bool{}
	for _, svc := range p.Services {
		if len(svc.Networks) == 0 {
			used["default"] = true
		}
		for n := range svc.Networks {
			used[n] = true
		}
	}
	for _, key := range slices.Sorted(maps.Keys(used)) {
		nc, ok := p.Networks[key]
		if !ok && key != "default" {
			errs = append(errs, fmt.Errorf("network %q is used but not declared", key))
			continue
		}
		n := Network{Key: key, Name: scope(stack, key), Driver: "overlay"}
		if ok {
			if nc.Name != "" {
				n.Name = nc.Name
			}
			n.External = bool(nc.External)
			if nc.Driver != "" {
				n.Driver = nc.Driver
			}
			n.Options = nc.DriverOpts
			n.Internal = nc.Internal
			n.Attachable = nc.Attachable
			n.Labels = maps.Clone(nc.Labels)
			if nc.Ipam.Driver != "" || len(nc.Ipam.Config) > 0 {
				st.Warnings = append(st.Warnings, fmt.Sprintf("network %s: ipam settings are not applied by shoal; create the network yourself and mark it external", key))
			}
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[LabelNamespace] = stack
		st.Networks = append(st.Networks, n)
	}

	var err error
	st.Configs, err = objects(stack, "config", p.Configs, p.Environment)
	if err != nil {
		errs = append(errs, err)
	}
	secrets := map[string]types.ConfigObjConfig{}
	for k, v := range p.Secrets {
		secrets[k] = types.ConfigObjConfig(v)
	}
	st.Secrets, err = objects(stack, "secret", secrets, p.Environment)
	if err != nil {
		errs = append(errs, err)
	}

	names := slices.Sorted(maps.Keys(p.Services))
	for _, name := range names {
		svc := p.Services[name]
		spec, warns, err := serviceSpec(stack, svc, p, st)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", name, err))
			continue
		}
		st.Warnings = append(st.Warnings, warns...)
		st.Services = append(st.Services, Service{Name: name, Spec: spec})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return st, nil
}

// objects reads configs and secrets; env is the stack's interpolation environment
// (process environment, .env and --env-file), where `environment:` sources come from.
func objects(stack, kind string, in map[string]types.ConfigObjConfig, env types.Mapping) ([]Object, error) {
	var out []Object
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(in)) {
		c := in[key]
		o := Object{Key: key, External: bool(c.External), Labels: maps.Clone(c.Labels)}
		if o.External {
			o.Name = c.Name
			if o.Name == "" {
				o.Name = key
			}
			out = append(out, o)
			continue
		}
		switch {
		case c.File != "":
			b, err := os.ReadFile(c.File)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", kind, key, err))
				continue
			}
			o.Data = b
		case c.Content != "":
			o.Data = []byte(c.Content)
		case c.Environment != "":
			v, ok := env[c.Environment]
			if !ok {
				errs = append(errs, fmt.Errorf("%s %s: environment variable %s is not set", kind, key, c.Environment))
				continue
			}
			o.Data = []byte(v)
		default:
			errs = append(errs, fmt.Errorf("%s %s: needs file, content, environment or external", kind, key))
			continue
		}
		sum := sha256.Sum256(o.Data)
		o.Name = scope(stack, key) + "-" + hex.EncodeToString(sum[:])[:10]
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels[LabelNamespace] = stack
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// defaultMonitor is how long Swarm watches each updated task for failure: long
// enough for a few rounds of a typical health check.
const defaultMonitor = 10 * time.Second

func serviceSpec(stack string, svc types.ServiceConfig, p *types.Project, st *Stack) (swarm.ServiceSpec, []string, error) {
	var warns []string
	var errs []error
	ignored := func(what string) {
		warns = append(warns, fmt.Sprintf("service %s: %s is ignored by Swarm", svc.Name, what))
	}
	if svc.Image == "" {
		return swarm.ServiceSpec{}, nil, errors.New("no image: Swarm services run images, not builds; set image")
	}
	if svc.Build != nil {
		ignored("build")
	}
	if svc.ContainerName != "" {
		ignored("container_name")
	}
	if len(svc.DependsOn) > 0 {
		ignored("depends_on")
	}
	if svc.Privileged {
		ignored("privileged")
	}
	if svc.NetworkMode != "" {
		ignored("network_mode")
	}

	deploy := svc.Deploy
	if deploy == nil {
		deploy = &types.DeployConfig{}
	}

	serviceLabels := maps.Clone(map[string]string(deploy.Labels))
	if serviceLabels == nil {
		serviceLabels = map[string]string{}
	}
	serviceLabels[LabelNamespace] = stack
	serviceLabels[LabelImage] = svc.Image
	containerLabels := maps.Clone(map[string]string(svc.Labels))
	if containerLabels == nil {
		containerLabels = map[string]string{}
	}
	containerLabels[LabelNamespace] = stack

	cs := &swarm.ContainerSpec{
		Image:          svc.Image,
		Labels:         containerLabels,
		Command:        svc.Entrypoint,
		Args:           svc.Command,
		Hostname:       svc.Hostname,
		Env:            env(svc.Environment),
		Dir:            svc.WorkingDir,
		User:           svc.User,
		Groups:         svc.GroupAdd,
		Init:           svc.Init,
		StopSignal:     svc.StopSignal,
		TTY:            svc.Tty,
		OpenStdin:      svc.StdinOpen,
		ReadOnly:       svc.ReadOnly,
		Hosts:          hosts(svc.ExtraHosts),
		Sysctls:        map[string]string(svc.Sysctls),
		CapabilityAdd:  svc.CapAdd,
		CapabilityDrop: svc.CapDrop,
		OomScoreAdj:    svc.OomScoreAdj,
	}
	if svc.StopGracePeriod != nil {
		d := time.Duration(*svc.StopGracePeriod)
		cs.StopGracePeriod = &d
	}
	if len(svc.DNS) > 0 || len(svc.DNSSearch) > 0 || len(svc.DNSOpts) > 0 {
		cs.DNSConfig = &swarm.DNSConfig{Search: svc.DNSSearch, Options: svc.DNSOpts}
		for _, s := range svc.DNS {
			a, err := netip.ParseAddr(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("dns %q: %w", s, err))
				continue
			}
			cs.DNSConfig.Nameservers = append(cs.DNSConfig.Nameservers, a)
		}
	}
	if svc.HealthCheck != nil {
		cs.Healthcheck = healthcheck(svc.HealthCheck)
	}
	for _, name := range slices.Sorted(maps.Keys(svc.Ulimits)) {
		u := svc.Ulimits[name]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		cs.Ulimits = append(cs.Ulimits, &container.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	for _, v := range svc.Volumes {
		m, err := mountFor(stack, v, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs.Mounts = append(cs.Mounts, m)
	}
	for _, ref := range svc.Secrets {
		o, ok := find(st.Secrets, ref.Source)
		if !ok {
			errs = append(errs, fmt.Errorf("secret %q is not declared at the top level", ref.Source))
			continue
		}
		cs.Secrets = append(cs.Secrets, &swarm.SecretReference{
			SecretName: o.Name,
			File:       &swarm.SecretReferenceFileTarget{Name: strings.TrimPrefix(orDefault(ref.Target, ref.Source), "/run/secrets/"), UID: orDefault(ref.UID, "0"), GID: orDefault(ref.GID, "0"), Mode: fileMode(ref.Mode, 0o444)},
		})
	}
	for _, ref := range svc.Configs {
		o, ok := find(st.Configs, ref.Source)
		if !ok {
			errs = append(errs, fmt.Errorf("config %q is not declared at the top level", ref.Source))
			continue
		}
		cs.Configs = append(cs.Configs, &swarm.ConfigReference{
			ConfigName: o.Name,
			File:       &swarm.ConfigReferenceFileTarget{Name: orDefault(ref.Target, "/"+ref.Source), UID: orDefault(ref.UID, "0"), GID: orDefault(ref.GID, "0"), Mode: fileMode(ref.Mode, 0o444)},
		})
	}

	task := swarm.TaskSpec{ContainerSpec: cs}
	if svc.Logging != nil && svc.Logging.Driver != "" {
		task.LogDriver = &swarm.Driver{Name: svc.Logging.Driver, Options: svc.Logging.Options}
	}
	rp, err := restartPolicy(svc.Restart, deploy.RestartPolicy)
	if err != nil {
		errs = append(errs, err)
	}
	task.RestartPolicy = rp
	task.Resources = resources(deploy.Resources)
	if len(deploy.Placement.Constraints) > 0 || len(deploy.Placement.Preferences) > 0 || deploy.Placement.MaxReplicas > 0 {
		task.Placement = &swarm.Placement{Constraints: deploy.Placement.Constraints, MaxReplicas: deploy.Placement.MaxReplicas}
		for _, pref := range deploy.Placement.Preferences {
			task.Placement.Preferences = append(task.Placement.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: pref.Spread}})
		}
	}
	task.Networks = networkAttachments(svc, st)

	mode, err := serviceMode(deploy.Mode, svc.GetScale(), deploy.Replicas != nil || svc.Scale != nil)
	if err != nil {
		errs = append(errs, err)
	}

	spec := swarm.ServiceSpec{
		Annotations:    swarm.Annotations{Name: scope(stack, svc.Name), Labels: serviceLabels},
		TaskTemplate:   task,
		Mode:           mode,
		UpdateConfig:   updateConfig(deploy.UpdateConfig, swarm.UpdateFailureActionRollback),
		RollbackConfig: updateConfig(deploy.RollbackConfig, swarm.UpdateFailureActionPause),
		EndpointSpec:   endpoint(deploy.EndpointMode, svc.Ports),
	}
	if mode.ReplicatedJob != nil || mode.GlobalJob != nil {
		// Swarm refuses update settings on jobs: each deploy simply runs them again.
		spec.UpdateConfig, spec.RollbackConfig = nil, nil
	}
	if len(errs) > 0 {
		return spec, warns, errors.Join(errs...)
	}
	return spec, warns, nil
}

func find(objs []Object, key string) (Object, bool) {
	for _, o := range objs {
		if o.Key == key {
			return o, true
		}
	}
	return Object{}, false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func fileMode(m *types.FileMode, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m)
}

func env(m types.MappingWithEquals) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v := m[k]; v != nil {
			out = append(out, k+"="+*v)
		} else {
			out = append(out, k)
		}
	}
	return out
}

func hosts(h types.HostsList) []string {
	var out []string
	for _, host := range slices.Sorted(maps.Keys(h)) {
		for _, ip := range h[host] {
			// Swarm's Hosts use the /etc/hosts order: IP first.
			out = append(out, ip+" "+host)
		}
	}
	return out
}

func healthcheck(h *types.HealthCheckConfig) *container.HealthConfig {
	if h.Disable {
		return &container.HealthConfig{Test: []string{"NONE"}}
	}
	hc := &container.HealthConfig{Test: h.Test}
	if h.Interval != nil {
		hc.Interval = time.Duration(*h.Interval)
	}
	if h.Timeout != nil {
		hc.Timeout = time.Duration(*h.Timeout)
	}
	if h.StartPeriod != nil {
		hc.StartPeriod = time.Duration(*h.StartPeriod)
	}
	if h.StartInterval != nil {
		hc.StartInterval = time.Duration(*h.StartInterval)
	}
	if h.Retries != nil {
		hc.Retries = int(*h.Retries)
	}
	return hc
}

func mountFor(stack string, v types.ServiceVolumeConfig, p *types.Project) (mount.Mount, error) {
	m := mount.Mount{Target: v.Target, Source: v.Source, ReadOnly: v.ReadOnly}
	switch v.Type {
	case types.VolumeTypeBind:
		m.Type = mount.TypeBind
		if v.Bind != nil && v.Bind.Propagation != "" {
			m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
		}
	case types.VolumeTypeTmpfs:
		m.Type = mount.TypeTmpfs
		m.Source = ""
		if v.Tmpfs != nil {
			m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size)}
		}
	case types.VolumeTypeVolume, "":
		m.Type = mount.TypeVolume
		if v.Source == "" {
			break // anonymous volume
		}
		vc, ok := p.Volumes[v.Source]
		if !ok {
			return m, fmt.Errorf("volume %q is not declared at the top level", v.Source)
		}
		m.Source = scope(stack, v.Source)
		if vc.Name != "" {
			m.Source = vc.Name
		}
		opts := &mount.VolumeOptions{Labels: maps.Clone(map[string]string(vc.Labels))}
		if v.Volume != nil {
			opts.NoCopy = v.Volume.NoCopy
			opts.Subpath = v.Volume.Subpath
		}
		if !bool(vc.External) {
			if opts.Labels == nil {
				opts.Labels = map[string]string{}
			}
			opts.Labels[LabelNamespace] = stack
			if vc.Driver != "" || len(vc.DriverOpts) > 0 {
				opts.DriverConfig = &mount.Driver{Name: vc.Driver, Options: vc.DriverOpts}
			}
		}
		m.VolumeOptions = opts
	default:
		return m, fmt.Errorf("volume %s: type %q is not supported by Swarm services", v.Target, v.Type)
	}
	return m, nil
}

func restartPolicy(restart string, rp *types.RestartPolicy) (*swarm.RestartPolicy, error) {
	if rp != nil {
		out := &swarm.RestartPolicy{Condition: swarm.RestartPolicyCondition(rp.Condition), MaxAttempts: rp.MaxAttempts}
		if rp.Delay != nil {
			d := time.Duration(*rp.Delay)
			out.Delay = &d
		}
		if rp.Window != nil {
			d := time.Duration(*rp.Window)
			out.Window = &d
		}
		return out, nil
	}
	switch {
	case restart == "":
		return nil, nil
	case restart == "no":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}, nil
	case restart == "always", restart == "unless-stopped":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}, nil
	case strings.HasPrefix(restart, "on-failure"):
		out := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure}
		if _, n, ok := strings.Cut(restart, ":"); ok {
			v, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("restart %q: %w", restart, err)
			}
			out.MaxAttempts = &v
		}
		return out, nil
	}
	return nil, fmt.Errorf("restart %q: want no, always, unless-stopped or on-failure[:N]", restart)
}

func resources(r types.Resources) *swarm.ResourceRequirements {
	if r.Limits == nil && r.Reservations == nil {
		return nil
	}
	out := &swarm.ResourceRequirements{}
	if l := r.Limits; l != nil {
		out.Limits = &swarm.Limit{NanoCPUs: int64(float64(l.NanoCPUs) * 1e9), MemoryBytes: int64(l.MemoryBytes), Pids: l.Pids}
	}
	if rs := r.Reservations; rs != nil {
		out.Reservations = &swarm.Resources{NanoCPUs: int64(float64(rs.NanoCPUs) * 1e9), MemoryBytes: int64(rs.MemoryBytes)}
	}
	return out
}

func networkAttachments(svc types.ServiceConfig, st *Stack) []swarm.NetworkAttachmentConfig {
	// Named and external networks keep their own names on the cluster.
	byKey := func(key string) string {
		for _, n := range st.Networks {
			if n.Key == key {
				return n.Name
			}
		}
		return scope(st.Name, key)
	}
	if len(svc.Networks) == 0 {
		return []swarm.NetworkAttachmentConfig{{Target: byKey("default"), Aliases: []string{svc.Name}}}
	}
	keys := slices.Sorted(maps.Keys(svc.Networks))
	var out []swarm.NetworkAttachmentConfig
	for _, key := range keys {
		target := byKey(key)
		aliases := []string{svc.Name}
		if c := svc.Networks[key]; c != nil {
			aliases = append(aliases, c.Aliases...)
		}
		out = append(out, swarm.NetworkAttachmentConfig{Target: target, Aliases: aliases})
	}
	return out
}

func serviceMode(mode string, replicas int, explicit bool) (swarm.ServiceMode, error) {
	r := uint64(replicas)
	switch mode {
	case "", "replicated":
		return swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &r}}, nil
	case "global":
		if explicit {
			return swarm.ServiceMode{}, errors.New("replicas can't be set with deploy.mode global")
		}
		return swarm.ServiceMode{Global: &swarm.GlobalService{}}, nil
	case "replicated-job":
		return swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &r, TotalCompletions: &r}}, nil
	case "global-job":
		return swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}, nil
	}
	return swarm.ServiceMode{}, fmt.Errorf("deploy.mode %q: want replicated, global, replicated-job or global-job", mode)
}

// updateConfig applies the stack file's settings over shoal's zero-downtime defaults:
// one task at a time, new task started before the old one stops, a monitor window
// long enough to see a failing health check.
func updateConfig(u *types.UpdateConfig, failure swarm.FailureAction) *swarm.UpdateConfig {
	out := &swarm.UpdateConfig{
		Parallelism:   1,
		Order:         swarm.UpdateOrderStartFirst,
		FailureAction: failure,
		Monitor:       defaultMonitor,
	}
	if u == nil {
		return out
	}
	if u.Parallelism != nil {
		out.Parallelism = *u.Parallelism
	}
	if u.Delay != 0 {
		out.Delay = time.Duration(u.Delay)
	}
	if u.FailureAction != "" {
		out.FailureAction = swarm.FailureAction(u.FailureAction)
	}
	if u.Monitor != 0 {
		out.Monitor = time.Duration(u.Monitor)
	}
	out.MaxFailureRatio = u.MaxFailureRatio
	if u.Order != "" {
		out.Order = swarm.UpdateOrder(u.Order)
	}
	return out
}

func endpoint(mode string, ports []types.ServicePortConfig) *swarm.EndpointSpec {
	ep := &swarm.EndpointSpec{Mode: swarm.ResolutionMode(strings.ToLower(mode))}
	for _, p := range ports {
		var published uint64
		if p.Published != "" {
			// compose-go has already validated ranges; Swarm takes single ports.
			published, _ = strconv.ParseUint(p.Published, 10, 32)
		}
		ep.Ports = append(ep.Ports, swarm.PortConfig{
			Name:          p.Name,
			Protocol:      network.IPProtocol(orDefault(p.Protocol, "tcp")),
			TargetPort:    p.Target,
			PublishedPort: uint32(published),
			PublishMode:   swarm.PortConfigPublishMode(orDefault(p.Mode, "ingress")),
		})
	}
	sort.SliceStable(ep.Ports, func(i, j int) bool { return ep.Ports[i].TargetPort < ep.Ports[j].TargetPort })
	return ep
}
