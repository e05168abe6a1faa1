package deploytest_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/shoalci/shoal/internal/deploy/deploytest"
)

// The images the deploy tests use really land in the registry.
func TestBuildAndPush(t *testing.T) {
	cli := deploytest.LocalDocker(t)
	reg := deploytest.StartRegistry(t)
	deploytest.BuildAndPush(t, cli, reg+"/app:smoke", map[string]string{"APP_VERSION": "smoke"})

	resp, err := http.Get("http://" + reg + "/v2/app/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tags struct{ Tags []string }
	if err := json.NewDecoder(resp.Body).Decode(&tags); err != nil {
		t.Fatal(err)
	}
	if len(tags.Tags) != 1 || tags.Tags[0] != "smoke" {
		t.Fatalf("registry tags = %v, want [smoke]", tags.Tags)
	}
}
