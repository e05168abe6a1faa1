package tags_test

import (
	"testing"

	"github.com/shoalci/shoal/internal/tags"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		runner, job []string
		want        bool
	}{
		{[]string{"docker", "large"}, []string{"docker"}, true},
		{[]string{"docker"}, []string{"docker", "large"}, false},
		{[]string{"docker"}, nil, true},
	}
	for _, tt := range tests {
		if got := tags.Covers(tt.runner, tt.job); got != tt.want {
			t.Errorf("Covers(%v, %v) = %v, want %v", tt.runner, tt.job, got, tt.want)
		}
	}
}

func TestTakes(t *testing.T) {
	tests := []struct {
		runner      []string
		runUntagged bool
		job         []string
		want        bool
	}{
		{[]string{"docker"}, false, []string{"docker"}, true},
		{[]string{"docker"}, false, nil, false}, // GitLab's default for a tagged runner
		{[]string{"docker"}, true, nil, true},
		{nil, false, nil, true}, // a runner without tags runs untagged jobs
		{nil, false, []string{"docker"}, false},
	}
	for _, tt := range tests {
		if got := tags.Takes(tt.runner, tt.runUntagged, tt.job); got != tt.want {
			t.Errorf("Takes(%v, %v, %v) = %v, want %v", tt.runner, tt.runUntagged, tt.job, got, tt.want)
		}
	}
}

func TestKey(t *testing.T) {
	if k := tags.Key([]string{"large", "docker", "docker"}); k != "docker;large" {
		t.Errorf("Key = %q", k)
	}
	if tags.Key([]string{"large", "docker", "large"}) != "docker;large" {
		t.Error("Key does not sort and deduplicate")
	}
}
