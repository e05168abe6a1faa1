package glemu

import "github.com/shoalci/shoal/internal/trace"

// stageNames are the names of the trace generator's stages (shared/traces/README.md).
var stageNames = []string{"test", "build", "deploy"}

// PipelineStages turns a trace pipeline into the stages CreatePipeline takes,
// naming stages test, build, deploy (then stage-<k>) and jobs after the
// trace's job IDs, so that a simulation can map emulator jobs back to the trace.
func PipelineStages(p trace.Pipeline) []StageSpec {
	stages := make([]StageSpec, len(p.Stages))
	for k, st := range p.Stages {
		if k < len(stageNames) {
			stages[k].Name = stageNames[k]
		}
		stages[k].Jobs = make([]JobSpec, len(st))
		for i, j := range st {
			stages[k].Jobs[i] = JobSpec{Name: "job-" + itoa(j.ID), Duration: j.Duration, Tags: j.Tags}
		}
	}
	return stages
}
