// Command toktra-eval scores the anomaly detector on a seeded synthetic org:
// precision and recall per anomaly type, the false-positive rate on clean
// departures and detection time. It exits 1 when a target is missed, so CI
// can run it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly/synth"
)

func main() {
	err := run(os.Args[1:], os.Stdout)
	var missed targetsMissed
	switch {
	case errors.As(err, &missed):
		fmt.Fprintln(os.Stderr, "toktra-eval:", err)
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "toktra-eval:", err)
		os.Exit(2)
	}
}

type targetsMissed []string

func (t targetsMissed) Error() string { return "targets missed: " + strings.Join(t, "; ") }

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("toktra-eval", flag.ContinueOnError)
	seed := fs.Int64("seed", 1, "generator seed")
	users := fs.Int("users", synth.DefaultScenario().Users, "users in the synthetic org")
	days := fs.Int("days", synth.DefaultScenario().Days, "days of history")
	depart := fs.Float64("departures", synth.DefaultScenario().DepartureShare, "share of users who depart and are evaluated")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	verbose := fs.Bool("v", false, "list the departures the detector got wrong")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sc := synth.DefaultScenario()
	sc.Users, sc.Days, sc.DepartureShare = *users, *days, *depart
	if sc.Users < 10 || sc.DepartureShare <= 0 || sc.DepartureShare > 1 {
		return errors.New("need -users ≥ 10 and 0 < -departures ≤ 1")
	}
	if need := int((sc.Window+sc.Baseline)/(24*time.Hour)) + 10; sc.Days < need {
		return fmt.Errorf("-days must be at least %d", need)
	}
	org := synth.Generate(*seed, sc)
	res := synth.Evaluate(org, synth.EvalOptions{Now: time.Now, Workers: runtime.GOMAXPROCS(0)})
	if *asJSON {
		out := res
		if !*verbose {
			out.Outcomes = nil
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printTable(stdout, res, *verbose)
	}
	if m := res.Missed(); len(m) > 0 {
		return targetsMissed(m)
	}
	return nil
}

func printTable(w io.Writer, r synth.Result, verbose bool) {
	fmt.Fprintf(w, "seed %d: %d users, %d departures (%d clean)\n\n", r.Seed, r.Users, r.Departures, r.Clean)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tsupport\tTP\tFP\tFN\tprecision\trecall\t")
	for _, t := range r.Types {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t\n", t.Type, t.Support, t.TP, t.FP, t.FN, t.Precision, t.Recall)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nclean departures flagged: %d of %d (%.1f%%, target ≤ %.0f%%)\n",
		r.CleanFlagged, r.Clean, 100*r.CleanFPRate, 100*synth.TargetCleanFPMax)
	fmt.Fprintf(w, "detect time per departure: p50 %v, p99 %v (largest history %d events)\n",
		r.DetectP50.Round(time.Microsecond), r.DetectP99.Round(time.Microsecond), r.MaxEvents)
	if !verbose {
		return
	}
	fmt.Fprintln(w)
	for _, o := range r.Outcomes {
		if o.Correct() {
			continue
		}
		inj := string(o.Injected)
		if inj == "" {
			inj = "clean"
		}
		fmt.Fprintf(w, "%s injected %s (%s), found %v\n", o.User, inj, o.Detail, o.Found)
		if o.Report != nil {
			for _, f := range o.Report.Findings {
				fmt.Fprintf(w, "    %s %s: %s\n", f.Severity, f.Type, f.Explanation)
			}
			for _, n := range o.Report.Notes {
				fmt.Fprintf(w, "    note: %s\n", n)
			}
		}
	}
}
