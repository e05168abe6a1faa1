package deploy

import (
	"context"
	"testing"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoalci/shoal/internal/deploy/stack"
)

// A release job must not answer to the service's name: Swarm's DNS would send the
// service's clients to it (found as failed requests under load before this rule).
func TestReleaseSpecIsAQuietOneOff(t *testing.T) {
	st, err := stack.Load(context.Background(), stack.Options{
		Files: []string{"testdata/stack.yml"}, Name: "shop",
		Env: []string{"REGISTRY=reg.example", "WEB_PORT=8080"}, ImageTag: "v9",
	})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := releaseSpec(st, 0, st.Shoal.Release[0], "123")
	if err != nil {
		t.Fatal(err)
	}
	web, _ := st.Service("web")
	if len(web.Spec.TaskTemplate.Networks) == 0 || len(web.Spec.TaskTemplate.Networks[0].Aliases) == 0 {
		t.Fatal("test stack's web service has no network alias to strip")
	}
	for _, n := range spec.TaskTemplate.Networks {
		if len(n.Aliases) != 0 {
			t.Errorf("release job joins %s with aliases %v", n.Target, n.Aliases)
		}
	}
	if len(web.Spec.TaskTemplate.Networks[0].Aliases) == 0 {
		t.Error("building the release spec changed the service's own spec")
	}
	if spec.Mode.ReplicatedJob == nil || *spec.Mode.ReplicatedJob.TotalCompletions != 1 {
		t.Errorf("release job mode = %+v, want a replicated job of one", spec.Mode)
	}
	if spec.EndpointSpec != nil || spec.TaskTemplate.RestartPolicy.Condition != swarm.RestartPolicyConditionNone {
		t.Errorf("release job publishes ports or restarts: %+v %+v", spec.EndpointSpec, spec.TaskTemplate.RestartPolicy)
	}
	if got := spec.TaskTemplate.ContainerSpec.Args; len(got) != 2 || got[0] != "-release" {
		t.Errorf("release job args = %v", got)
	}
	if spec.Name != "shop_release-1-123" || spec.Labels[stack.LabelNamespace] != "shop" || spec.Labels[LabelRelease] != "web" {
		t.Errorf("release job name/labels = %s %v", spec.Name, spec.Labels)
	}
}
