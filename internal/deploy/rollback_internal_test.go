package deploy

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

// svc is a service as the manager lists it: current spec from deploy id cur at
// version vcur, previous spec (if prev is not "-") from deploy id prev, and its
// update state ("" for none).
func svc(name, cur, vcur, prev, vprev string, state swarm.UpdateState) swarm.Service {
	s := swarm.Service{Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelDeployID: cur, LabelVersion: vcur}}}}
	if prev != "-" {
		s.PreviousSpec = &swarm.ServiceSpec{Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelDeployID: prev, LabelVersion: vprev}}}
	}
	if state != "" {
		s.UpdateStatus = &swarm.UpdateStatus{State: state}
	}
	return s
}

func names(ss []swarm.Service) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Spec.Name)
	}
	return strings.Join(out, ",")
}

func TestPlanRollback(t *testing.T) {
	const id1, id2, id3 = "01000000000000000001", "01000000000000000002", "01000000000000000003"
	done, rolled := swarm.UpdateStateCompleted, swarm.UpdateStateRollbackCompleted
	tests := []struct {
		name     string
		services []swarm.Service
		targets  string
		blocked  string // service names, comma-separated
		created  string
		refused  string // in the refusal, "" when none
	}{
		{
			name:     "after a good deploy of every service",
			services: []swarm.Service{svc("api", id2, "v2", id1, "v1", done), svc("web", id2, "v2", id1, "v1", done)},
			targets:  "api,web",
		},
		{
			name:     "only the last deploy's services go back",
			services: []swarm.Service{svc("api", id3, "v3", id2, "v2", done), svc("web", id2, "v2", id1, "v1", done)},
			targets:  "api",
		},
		{
			// The reported bug: web's health check failed on v3, Swarm rolled web back
			// and cleared its previous spec, shoal rolled api back (v3 is its previous).
			name:     "after a failed deploy",
			services: []swarm.Service{svc("api", id2, "v2", id3, "v3", rolled), svc("web", id2, "v2", "-", "", rolled)},
			blocked:  "api,web",
			refused:  "cannot be rolled back",
		},
		{
			name:     "a second rollback",
			services: []swarm.Service{svc("api", id1, "v1", id2, "v2", rolled), svc("web", id1, "v1", id2, "v2", rolled)},
			blocked:  "api,web",
			refused:  "cannot be rolled back",
		},
		{
			name:     "some of the last deploy's services cannot go back: none does",
			services: []swarm.Service{svc("api", id2, "v2", id3, "v3", rolled), svc("web", id2, "v2", id1, "v1", done)},
			targets:  "web",
			blocked:  "api",
			refused:  "rolling back only web would leave the stack mixed",
		},
		{
			// Deploy ids come from the deploying machines' clocks; Swarm's update
			// state still tells a rollback apart.
			name:     "previous spec looks older but the last change was a rollback",
			services: []swarm.Service{svc("api", id2, "v2", id1, "v1", rolled)},
			blocked:  "api",
			refused:  "is the version it left",
		},
		{
			name:     "previous spec from the same deploy (a manual docker service update)",
			services: []swarm.Service{svc("api", id2, "v2", id2, "v2", done)},
			blocked:  "api",
			refused:  "not from an older deploy",
		},
		{
			name:     "first deploy",
			services: []swarm.Service{svc("api", id1, "v1", "-", "", ""), svc("web", id1, "v1", "-", "", "")},
			created:  "api,web",
			refused:  "no earlier version",
		},
		{
			name:     "a deploy that added a service",
			services: []swarm.Service{svc("api", id2, "v2", id1, "v1", done), svc("new", id2, "v2", "-", "", "")},
			targets:  "api",
			created:  "new",
		},
		{
			name:     "a spec from before shoal is older",
			services: []swarm.Service{svc("api", id1, "v1", "", "", done)},
			targets:  "api",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := planRollback(tt.services)
			var blocked []string
			for _, b := range rp.blocked {
				blocked = append(blocked, b[:strings.Index(b, ":")])
			}
			if got := names(rp.targets); got != tt.targets {
				t.Errorf("targets %q, want %q", got, tt.targets)
			}
			if got := strings.Join(blocked, ","); got != tt.blocked {
				t.Errorf("blocked %q, want %q (%v)", got, tt.blocked, rp.blocked)
			}
			if got := strings.Join(rp.created, ","); got != tt.created {
				t.Errorf("created %q, want %q", got, tt.created)
			}
			err := rp.refusal("shop")
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused) || !strings.Contains(err.Error(), "next: deploy the version you want")):
				t.Errorf("refusal %v, want one saying %q and what to do", err, tt.refused)
			}
		})
	}
}

func TestDeployErrorNamesWhatIsLeft(t *testing.T) {
	e := &DeployError{Stack: "shop", RolledBack: []string{"shop_web"}, NotRolledBack: []LeftBehind{{Service: "shop_api", State: "still on the new version", Next: "'docker service ps shop_api' shows its tasks"}}}
	msg := e.Error()
	for _, want := range []string{"rolled back to the previous version: shop_web", "NOT rolled back: shop_api (still on the new version): 'docker service ps shop_api'", "the stack is mixed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
}
