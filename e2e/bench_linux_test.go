package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkLockLatency measures, with the real binaries, the time from the
// lockout API call until the device refuses connections to the LLM
// endpoint (the rule is in force), over repeated lock/override cycles,
// and the agent's resident memory when idle. Run it with `make bench`.
func BenchmarkLockLatency(b *testing.B) {
	requireRoot(b)
	env := newNetEnv(b)
	cp := startControlPlane(b, env, "")
	const email = "bench@example.com"
	agent := enrollAgent(b, env, cp, email)
	agent.start(b)
	waitAPI(b, "the device to come online", 30*time.Second, func() bool {
		var list struct{ Data []deviceResp }
		cp.call(b, "GET", "/v1/devices?email="+email, nil, &list)
		return len(list.Data) == 1 && list.Data[0].Online
	})
	// Idle: connected, unlocked, nothing to do.
	time.Sleep(2 * time.Second)
	idleRSS := rssKiB(b, agent.proc.cmd.Process.Pid)

	var lock, unlock []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		var lo lockoutResp
		if code := cp.call(b, "POST", "/v1/lockouts", map[string]string{"email": email}, &lo); code != 201 {
			b.Fatalf("lockout = %d", code)
		}
		waitFor(b, "the lock", 10*time.Second, func() bool {
			ok, refused, _ := env.llmReachable()
			return !ok && refused
		})
		lock = append(lock, time.Since(start))
		start = time.Now()
		if code := cp.call(b, "POST", "/v1/lockouts/"+lo.ID+"/override", map[string]string{"reason": "benchmark"}, &lo); code != 200 {
			b.Fatalf("override = %d", code)
		}
		waitFor(b, "the unlock", 10*time.Second, func() bool {
			ok, _, _ := env.llmReachable()
			return ok
		})
		unlock = append(unlock, time.Since(start))
	}
	b.StopTimer()
	busyRSS := rssKiB(b, agent.proc.cmd.Process.Pid)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(lock, 50)), "lock-p50-ms")
	b.ReportMetric(ms(percentile(lock, 99)), "lock-p99-ms")
	b.ReportMetric(ms(percentile(unlock, 50)), "unlock-p50-ms")
	b.ReportMetric(ms(percentile(unlock, 99)), "unlock-p99-ms")
	b.ReportMetric(float64(idleRSS)/1024, "agent-idle-rss-MiB")
	b.ReportMetric(float64(busyRSS)/1024, "agent-rss-after-MiB")
	fmt.Fprintf(os.Stderr, "lock latency over %d cycles: p50 %.1f ms, p99 %.1f ms; unlock p50 %.1f ms, p99 %.1f ms; agent idle RSS %.1f MiB (%.1f MiB after the cycles)\n",
		len(lock), ms(percentile(lock, 50)), ms(percentile(lock, 99)), ms(percentile(unlock, 50)), ms(percentile(unlock, 99)),
		float64(idleRSS)/1024, float64(busyRSS)/1024)
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(i, len(s))-1)]
}

// rssKiB reads a process's resident set size.
func rssKiB(tb testing.TB, pid int) int {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib)
			return kib
		}
	}
	tb.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
