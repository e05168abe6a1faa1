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

func TestKey(t *testing.T) {
	if k := tags.Key([]string{"large", "docker", "docker"}); k != "docker;large" {
		t.Errorf("Key = %q", k)
	}
	if tags.Key([]string{"large", "docker", "large"}) != "docker;large" {
		t.Error("Key does not sort and deduplicate")
	}
}
