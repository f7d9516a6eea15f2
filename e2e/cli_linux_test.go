package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestToktractl drives the admin CLI against the real server, as a script
// would (--json) and as a person would (tables).
func TestToktractl(t *testing.T) {
	requireRoot(t)
	env := newNetEnv(t)
	cp := startControlPlane(t, env, "")
	agent := enrollAgent(t, env, cp, "carol@example.com")
	agent.start(t)
	ctl := func(args ...string) (string, error) {
		base := []string{"netns", "exec", env.cp, filepath.Join(binDir, "toktractl"),
			"--server", cp.apiURL, "--api-key", cp.apiKey, "--ca-file", filepath.Join(cp.dataDir, "pki", "ca.pem")}
		out, err := exec.Command("ip", append(base, args...)...).CombinedOutput()
		return string(out), err
	}
	mustJSON := func(args ...string) map[string]any {
		t.Helper()
		out, err := ctl(append([]string{"--json"}, args...)...)
		if err != nil {
			t.Fatalf("toktractl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("toktractl --json %s printed %q: %v", strings.Join(args, " "), out, err)
		}
		return v
	}
	lo := mustJSON("lockout", "create", "carol@example.com")
	id, _ := lo["id"].(string)
	if !strings.HasPrefix(id, "lck_") {
		t.Fatalf("lockout create --json = %v; want a lockout id", lo)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := ctl("lockout", "status", id)
		if err != nil {
			t.Fatalf("lockout status: %v\n%s", err, out)
		}
		if strings.Contains(out, "applied") {
			if !strings.Contains(out, "carol@example.com") || !strings.Contains(out, "no providers connected") {
				t.Errorf("lockout status table:\n%s\nwant the user and the provider step", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lockout never applied:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if list := mustJSON("lockout", "list", "--state", "open"); len(list["data"].([]any)) != 1 {
		t.Errorf("lockout list --state open = %v; want one", list)
	}
	if devs := mustJSON("devices", "list", "--email", "carol@example.com"); len(devs["data"].([]any)) != 1 {
		t.Errorf("devices list = %v; want one", devs)
	}
	audit := mustJSON("audit-log", "--action", "lockouts.create")
	if entries, _ := audit["data"].([]any); len(entries) != 1 {
		t.Errorf("audit-log --action lockouts.create = %v; want one entry", audit)
	}
	if out, err := ctl("lockout", "create", "nobody@example.com"); err == nil || !strings.Contains(out, "unknown_user") {
		t.Errorf("lockout create for an unknown user: err=%v out=%q; want a failure naming unknown_user", err, out)
	}
	if out, err := ctl("providers", "connect", "openai", "--admin-key-file", "/nonexistent"); err == nil || !strings.Contains(out, "reading the admin key") {
		t.Errorf("providers connect without a key file: err=%v out=%q; want a clear failure", err, out)
	}
	if out, err := ctl("lockout", "override", id, "--reason", "e2e"); err != nil || !strings.Contains(out, "overridden") {
		t.Errorf("lockout override: %v\n%s", err, out)
	}
}
