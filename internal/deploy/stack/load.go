// Package stack reads a compose stack file with compose-go (interpolation from
// the environment and env files, validation with file positions) and turns it
// into the Swarm objects `docker stack deploy` would create, labelled with the
// stack namespace so `docker stack ps NAME` shows them. The `x-shoal` key holds
// shoal's own settings: release tasks and hooks.
package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Options says which files to read and how to interpolate them.
type Options struct {
	Files    []string // stack files, later ones override earlier ones
	Name     string   // stack name (the Swarm namespace)
	EnvFiles []string // KEY=VALUE files for interpolation
	Env      []string // the process environment (os.Environ()), KEY=VALUE
	// ImageTag, when set, is offered to interpolation as IMAGE_TAG
	// (image: registry.example.com/app:${IMAGE_TAG}).
	ImageTag string
}

// Stack is a loaded, converted stack.
type Stack struct {
	Name     string
	Services []Service // sorted by name
	Networks []Network
	Configs  []Object
	Secrets  []Object
	Shoal    Extension
	// Warnings are compose keys that Swarm ignores, so a person knows.
	Warnings []string
	Project  *types.Project
}

// Service looks a service up by its short name.
func (s *Stack) Service(name string) (Service, bool) {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc, true
		}
	}
	return Service{}, false
}

var stackNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Load reads, interpolates, validates and converts the stack.
func Load(ctx context.Context, opts Options) (*Stack, error) {
	if !stackNameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("stack name %q: use lower-case letters, digits, '-' and '_', starting with a letter or digit", opts.Name)
	}
	if len(opts.Files) == 0 {
		return nil, errors.New("no stack file: pass -f stack.yml")
	}
	for _, f := range opts.Files {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("stack file: %w", err)
		}
	}
	env := slices.Clone(opts.Env)
	if opts.ImageTag != "" {
		env = append(env, "IMAGE_TAG="+opts.ImageTag)
	}
	projectOptions := func(extra ...cli.ProjectOptionsFn) (*cli.ProjectOptions, error) {
		return cli.NewProjectOptions(opts.Files, append([]cli.ProjectOptionsFn{
			cli.WithName(opts.Name),
			cli.WithWorkingDirectory(filepath.Dir(opts.Files[0])),
			cli.WithEnv(env),
			cli.WithEnvFiles(opts.EnvFiles...),
			cli.WithDotEnv,
			cli.WithResolvedPaths(true),
		}, extra...)...)
	}
	po, err := projectOptions(cli.WithInterpolation(true))
	if err != nil {
		return nil, fmt.Errorf("stack file options: %w", err)
	}
	project, err := po.LoadProject(ctx)
	if err != nil {
		return nil, withPosition(err, opts.Files)
	}
	ext, err := parseExtension(project.Extensions)
	if err != nil {
		return nil, fmt.Errorf("stack file %s: x-shoal: %w", strings.Join(opts.Files, ", "), err)
	}
	ext.Hooks.setText(ctx, projectOptions, project.Environment)
	st, err := convert(opts.Name, project)
	if err != nil {
		return nil, err
	}
	st.Shoal = ext
	st.Project = project
	if err := st.validateExtension(); err != nil {
		return nil, fmt.Errorf("stack file %s: %w", strings.Join(opts.Files, ", "), err)
	}
	return st, nil
}

// Extension is the stack file's `x-shoal` key.
type Extension struct {
	// Release tasks run, in order, to completion from the new images before any
	// long-running service is updated (database migrations, collectstatic).
	Release []ReleaseTask `json:"release"`
	Hooks   Hooks         `json:"hooks"`
	// Timeout bounds the wait for all services to converge (default 10m).
	Timeout Duration `json:"timeout"`
}

// ReleaseTask is one run-to-completion command.
type ReleaseTask struct {
	// Service whose image, environment, networks, secrets and configs the task uses.
	Service string   `json:"service"`
	Command []string `json:"command"`
	// Timeout bounds the task (default 10m).
	Timeout Duration `json:"timeout"`
}

// Hooks are commands run on the machine running shoal, with SHOAL_* variables.
type Hooks struct {
	PreDeploy  []Hook `json:"pre-deploy"`
	PostDeploy []Hook `json:"post-deploy"`
}

// Duration reads "90s", "10m" from the stack file.
type Duration time.Duration

// UnmarshalJSON accepts a Go duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want \"90s\" or seconds, got %s", b)
	}
	*d = Duration(time.Duration(n * float64(time.Second)))
	return nil
}

func parseExtension(exts types.Extensions) (Extension, error) {
	var ext Extension
	raw, ok := exts["x-shoal"]
	if !ok {
		return ext, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return ext, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ext); err != nil {
		return ext, fmt.Errorf("%w (known keys: release, hooks, timeout)", err)
	}
	return ext, nil
}

// validateExtension reports every problem at once.
func (s *Stack) validateExtension() error {
	var errs []error
	for i, rt := range s.Shoal.Release {
		if rt.Service == "" {
			errs = append(errs, fmt.Errorf("x-shoal.release[%d]: no service: name the service whose image runs the task", i))
		} else if _, ok := s.Service(rt.Service); !ok {
			errs = append(errs, fmt.Errorf("x-shoal.release[%d]: unknown service %q (services: %s)", i, rt.Service, strings.Join(s.serviceNames(), ", ")))
		}
		if len(rt.Command) == 0 {
			errs = append(errs, fmt.Errorf("x-shoal.release[%d]: no command", i))
		}
	}
	return errors.Join(errs...)
}

func (s *Stack) serviceNames() []string {
	var names []string
	for _, svc := range s.Services {
		names = append(names, svc.Name)
	}
	return names
}
