package sim_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/sim"
	"github.com/shoalci/shoal/internal/trace"
)

func TestScratchRun(t *testing.T) {
	tr, err := trace.ParseFile(os.Getenv("TRACE"))
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := policy.ByName(os.Getenv("POLICY"), nil)
	res, err := sim.Run(context.Background(), sim.Options{Trace: tr, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", " ")
	t.Log(string(b))
}
