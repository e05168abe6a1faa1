// Package tags holds GitLab's rules for runner tags, in one place for the
// trace reader, the demand source, the policies and the simulator: which
// runner may take which job, and the canonical name of a set of tags.
package tags

import (
	"slices"
	"strings"
)

// Key is the canonical name of a tag set: sorted, without duplicates, joined
// by ';'. Two jobs need the same runners exactly when their keys match.
func Key(tags []string) string {
	if len(tags) <= 1 {
		return strings.Join(tags, ";")
	}
	return strings.Join(Sorted(tags), ";")
}

// Sorted is a copy of tags, sorted and without duplicates.
func Sorted(tags []string) []string {
	s := slices.Clone(tags)
	slices.Sort(s)
	return slices.Compact(s)
}

// Takes reports whether a runner with runnerTags may take a job with jobTags
// (GitLab's rule): a tagged job, when the runner covers its tags; an untagged
// one, when the runner runs untagged jobs, which a runner without tags always
// does and a tagged one only with run_untagged.
func Takes(runnerTags []string, runUntagged bool, jobTags []string) bool {
	if len(jobTags) == 0 {
		return runUntagged || len(runnerTags) == 0
	}
	return Covers(runnerTags, jobTags)
}

// Covers reports whether a runner with runnerTags may take a job with jobTags:
// every job tag must be among the runner's (GitLab's rule).
func Covers(runnerTags, jobTags []string) bool {
	for _, t := range jobTags {
		if !slices.Contains(runnerTags, t) {
			return false
		}
	}
	return true
}
