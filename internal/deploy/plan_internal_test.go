package deploy

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

// The manager stores specs normalised (image pinned to a digest, network names
// turned into IDs, empty resources, platforms from the manifest): the plan must
// name only what the stack file changed.
func TestDiffSpecsIgnoresClusterNormalisation(t *testing.T) {
	want := func() swarm.ServiceSpec {
		one := uint64(1)
		return swarm.ServiceSpec{
			TaskTemplate: swarm.TaskSpec{
				ContainerSpec: &swarm.ContainerSpec{
					Image:   "reg.example/app:v2",
					Env:     []string{"A=1"},
					Configs: []*swarm.ConfigReference{{ConfigName: "shop_conf-abc", File: &swarm.ConfigReferenceFileTarget{Name: "/conf"}}},
				},
				Networks: []swarm.NetworkAttachmentConfig{{Target: "shop_default", Aliases: []string{"web"}}},
			},
			Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
			EndpointSpec: &swarm.EndpointSpec{},
		}
	}
	cluster := want()
	cluster.TaskTemplate.ContainerSpec.Image = "reg.example/app:v2@sha256:0123"
	cluster.TaskTemplate.ContainerSpec.Configs[0].ConfigID = "cfg123"
	cluster.TaskTemplate.Networks[0].Target = "n7x2k1"
	cluster.TaskTemplate.Resources = &swarm.ResourceRequirements{Limits: &swarm.Limit{}, Reservations: &swarm.Resources{}}
	cluster.TaskTemplate.Placement = &swarm.Placement{Platforms: []swarm.Platform{{Architecture: "amd64", OS: "linux"}}}
	cluster.EndpointSpec = &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP}

	if got := diffSpecs(cluster, want()); len(got) != 1 || got[0] != "labels or other settings" {
		t.Errorf("diff of a spec against its own normalised copy = %v, want nothing of substance", got)
	}

	changed := want()
	changed.TaskTemplate.ContainerSpec.Image = "reg.example/app:v3"
	changed.TaskTemplate.ContainerSpec.Env = []string{"A=2"}
	three := uint64(3)
	changed.Mode.Replicated.Replicas = &three
	got := strings.Join(diffSpecs(cluster, changed), ", ")
	if got != "image reg.example/app:v2 → reg.example/app:v3, environment, replicas 1 → 3" {
		t.Errorf("diff = %q", got)
	}
}
