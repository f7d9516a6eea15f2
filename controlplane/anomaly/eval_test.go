package anomaly_test

import (
	"testing"

	"github.com/toktra/toktra/controlplane/anomaly/synth"
)

// TestSyntheticOrgTargets runs the evaluation the README quotes — the
// default scenario, seed 1, as `go run ./cmd/toktra-eval` does — and holds
// it to the targets. Generator and detector are deterministic, so
// the result is too.
func TestSyntheticOrgTargets(t *testing.T) {
	t.Parallel()
	res := synth.Evaluate(synth.Generate(1, synth.DefaultScenario()), synth.EvalOptions{Workers: 2})
	for _, ts := range res.Types {
		t.Logf("%-13s support %2d  tp %2d fp %2d fn %2d  precision %.3f recall %.3f", ts.Type, ts.Support, ts.TP, ts.FP, ts.FN, ts.Precision, ts.Recall)
		if ts.Support < 8 {
			t.Errorf("%s support = %d; want at least 8 for a meaningful score", ts.Type, ts.Support)
		}
	}
	t.Logf("clean flagged %d of %d", res.CleanFlagged, res.Clean)
	for _, m := range res.Missed() {
		t.Error(m)
	}
	if t.Failed() {
		for _, o := range res.Outcomes {
			if !o.Correct() {
				t.Logf("%s injected %q (%s), found %v", o.User, o.Injected, o.Detail, o.Found)
			}
		}
	}
}
