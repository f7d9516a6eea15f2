// Package e2e runs the real toktra-server and toktra-agent binaries against
// each other, with the device and a fake LLM endpoint in network namespaces
// of their own and real nftables enforcement.
package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type lockoutResp struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Devices []struct {
		DeviceID string `json:"device_id"`
		Kind     string `json:"kind"`
		State    string `json:"state"`
		Reason   string `json:"reason"`
	} `json:"devices"`
}

type deviceResp struct {
	ID                string   `json:"id"`
	Online            bool     `json:"online"`
	LockState         string   `json:"lock_state"`
	EnforcementActive bool     `json:"enforcement_active"`
	Enforcers         []string `json:"enforcers"`
}

func TestLockEndToEnd(t *testing.T) {
	requireRoot(t)
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			env := newNetEnv(t)
			dsn := ""
			if backend == "postgres" {
				dsn = newPostgresDatabase(t)
			}
			cp := startControlPlane(t, env, dsn)
			testLockLifecycle(t, env, cp)
		})
	}
}

func testLockLifecycle(t *testing.T, env *netEnv, cp *controlPlane) {
	const email = "alice@example.com"
	agent := enrollAgent(t, env, cp, email)
	agent.start(t)

	var dev deviceResp
	waitAPI(t, "the device to come online", 30*time.Second, func() bool {
		var list struct{ Data []deviceResp }
		cp.call(t, "GET", "/v1/devices?email="+email, nil, &list)
		if len(list.Data) == 1 && list.Data[0].Online {
			dev = list.Data[0]
			return true
		}
		return false
	})
	if !contains(dev.Enforcers, "nftables") {
		t.Errorf("device enforcers = %v; want nftables among them", dev.Enforcers)
	}

	for _, addr := range []string{env.llmAddr, env.llmDNSAddr} {
		if ok, _, err := env.reachable(addr); !ok {
			t.Fatalf("before the lock, connecting to %s failed: %v", addr, err)
		}
	}
	// A connection opened before the lock must be cut by it.
	early, err := env.dialFromDevice(env.llmAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if err := echoWorks(early); err != nil {
		t.Fatalf("echo before the lock: %v", err)
	}

	var lo lockoutResp
	if code := cp.call(t, "POST", "/v1/lockouts", map[string]string{"email": email}, &lo); code != 201 {
		t.Fatalf("POST /v1/lockouts = %d; want 201", code)
	}
	took := waitFor(t, "connections to the LLM endpoint to be refused", 10*time.Second, func() bool {
		ok, refused, _ := env.llmReachable()
		return !ok && refused
	})
	t.Logf("lock in force %v after the API call", took)
	if ok, refused, err := env.llmReachable(); ok || !refused {
		t.Fatalf("after the lock: reachable=%v refused=%v err=%v; want refused", ok, refused, err)
	}
	if err := echoWorks(early); err == nil {
		t.Error("a connection opened before the lock still works after it")
	}
	// api.anthropic.com came from DNS, not the hosts file.
	if ok, refused, err := env.reachable(env.llmDNSAddr); ok || !refused {
		t.Errorf("after the lock, api.anthropic.com (%s): reachable=%v refused=%v err=%v; want refused", env.llmDNSAddr, ok, refused, err)
	}
	waitAPI(t, "the lock to be acknowledged as applied", 10*time.Second, func() bool {
		var got lockoutResp
		cp.call(t, "GET", "/v1/lockouts/"+lo.ID, nil, &got)
		return len(got.Devices) == 1 && got.Devices[0].State == "applied"
	})
	// The person at the device can see why.
	var status struct {
		State   struct{ Locked bool } `json:"state"`
		Running struct {
			Connected         bool `json:"connected"`
			EnforcementActive bool `json:"enforcement_active"`
		} `json:"running"`
	}
	out, err := exec.Command(filepath.Join(binDir, "toktra-agent"), "status", "--json", "--state-dir", agent.stateDir).Output()
	if err != nil {
		t.Fatalf("toktra-agent status: %v", err)
	}
	if err := json.Unmarshal(out, &status); err != nil {
		t.Fatalf("toktra-agent status --json: %v\n%s", err, out)
	}
	if !status.State.Locked || !status.Running.Connected || !status.Running.EnforcementActive {
		t.Errorf("toktra-agent status = %s; want locked, connected, enforcement active", out)
	}
	if text, _ := exec.Command(filepath.Join(binDir, "toktra-agent"), "status", "--state-dir", agent.stateDir).Output(); !strings.Contains(string(text), "LOCKED") {
		t.Errorf("toktra-agent status says:\n%s\nwant it to say LOCKED", text)
	}

	checkSnapshot(t, cp, lo.ID, email)

	// A second trigger returns the same lockout.
	var again lockoutResp
	if code := cp.call(t, "POST", "/v1/lockouts", map[string]string{"email": strings.ToUpper(email)}, &again); code != 200 || again.ID != lo.ID {
		t.Errorf("second lockout = %d %s; want 200 %s", code, again.ID, lo.ID)
	}

	// Killed and restarted, the agent keeps the device locked.
	agent.proc.kill()
	agent.start(t)
	time.Sleep(500 * time.Millisecond)
	if ok, refused, err := env.llmReachable(); ok || !refused {
		t.Fatalf("after restarting the agent: reachable=%v refused=%v err=%v; want refused", ok, refused, err)
	}
	waitAPI(t, "the restarted agent to reconnect", 30*time.Second, func() bool {
		var d deviceResp
		cp.call(t, "GET", "/v1/devices/"+dev.ID, nil, &d)
		return d.Online && d.LockState == "locked" && d.EnforcementActive
	})
	if ok, refused, err := env.llmReachable(); ok || !refused {
		t.Fatalf("after the agent reconnected: reachable=%v refused=%v err=%v; want refused", ok, refused, err)
	}

	// Someone deletes the table by hand: the agent puts it back.
	tamperBefore := cp.metric(t, "toktra_tamper_events_total")
	if out, err := exec.Command("ip", "netns", "exec", env.dev, "nft", "delete", "table", "inet", "toktra").CombinedOutput(); err != nil {
		t.Fatalf("deleting the table: %v\n%s", err, out)
	}
	restored := waitFor(t, "the lock to be re-applied after the table was deleted", 10*time.Second, func() bool {
		ok, refused, _ := env.llmReachable()
		return !ok && refused
	})
	t.Logf("lock re-applied %v after the table was deleted", restored)
	waitAPI(t, "the tamper event to reach the control plane", 10*time.Second, func() bool {
		return cp.metric(t, "toktra_tamper_events_total") > tamperBefore
	})

	// The deliberate override unlocks.
	var over lockoutResp
	if code := cp.call(t, "POST", "/v1/lockouts/"+lo.ID+"/override", map[string]string{"reason": "e2e: rehired"}, &over); code != 200 {
		t.Fatalf("override = %d; want 200", code)
	}
	waitFor(t, "the LLM endpoint to be reachable after the override", 10*time.Second, func() bool {
		ok, _, _ := env.llmReachable()
		return ok
	})
	if out, err := exec.Command("ip", "netns", "exec", env.dev, "nft", "list", "table", "inet", "toktra").CombinedOutput(); err == nil {
		t.Errorf("after the override the toktra table is still there:\n%s", out)
	}

	// Offline at lock time: locked as soon as it reconnects.
	agent.proc.kill()
	var lo2 lockoutResp
	if code := cp.call(t, "POST", "/v1/lockouts", map[string]string{"email": email}, &lo2); code != 201 || lo2.ID == lo.ID {
		t.Fatalf("lockout while offline = %d %s; want 201 and a new lockout", code, lo2.ID)
	}
	if ok, _, err := env.llmReachable(); !ok {
		t.Fatalf("the offline device should not be locked yet: %v", err)
	}
	agent.start(t)
	took = waitFor(t, "the reconnecting device to lock", 30*time.Second, func() bool {
		ok, refused, _ := env.llmReachable()
		return !ok && refused
	})
	t.Logf("offline device locked %v after its agent restarted", took)
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// checkSnapshot waits for the lockout's audit snapshot to be made and
// stored write-once, downloads it through the API's URL and checks it with
// the independent tools: its hash, poppler's text and signature check, and
// openssl's verification of the hash's RFC 3161 token.
func checkSnapshot(t *testing.T, cp *controlPlane, lockoutID, email string) {
	t.Helper()
	var snap struct {
		SHA256         string `json:"sha256"`
		TimestampToken string `json:"timestamp_token"`
		VersionID      string `json:"version_id"`
		UploadedAt     string `json:"uploaded_at"`
		DownloadURL    string `json:"download_url"`
	}
	waitAPI(t, "the audit snapshot to be stored", 60*time.Second, func() bool {
		return cp.call(t, "GET", "/v1/lockouts/"+lockoutID+"/snapshot", nil, &snap) == 200 && snap.UploadedAt != ""
	})
	resp, err := cp.http.Get(snap.DownloadURL)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET download_url = %d, %v", resp.StatusCode, err)
	}
	if sum := sha256.Sum256(doc); hex.EncodeToString(sum[:]) != snap.SHA256 || snap.VersionID == "" {
		t.Fatalf("downloaded snapshot hash %x; want %s (version %q)", sum, snap.SHA256, snap.VersionID)
	}
	dir := t.TempDir()
	pdfPath := filepath.Join(dir, "snapshot.pdf")
	tokenPath := filepath.Join(dir, "snapshot.tsr")
	token, err := base64.StdEncoding.DecodeString(snap.TimestampToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pdfPath, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenPath, token, 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := exec.Command("pdftotext", pdfPath, "-").Output()
	if err != nil || !strings.Contains(string(text), email) || !strings.Contains(string(text), lockoutID) {
		t.Errorf("pdftotext(snapshot) = %v; want the user's email and the lockout id in:\n%.2000s", err, text)
	}
	// pdfsig exits 0 only for an intact signature (our root is not in its
	// trust store here, so it reports the certificate as untrusted).
	if out, err := exec.Command("pdfsig", pdfPath).CombinedOutput(); err != nil && !strings.Contains(string(out), "Signature is Valid") {
		t.Errorf("pdfsig(snapshot): %v\n%s", err, out)
	} else if !strings.Contains(string(out), "Signature is Valid") {
		t.Errorf("pdfsig(snapshot) does not say the signature is valid:\n%s", out)
	}
	root := filepath.Join(cp.dataDir, "tsa", "tsa-root.pem")
	if out, err := exec.Command("openssl", "ts", "-verify", "-data", pdfPath, "-in", tokenPath, "-token_in", "-CAfile", root).CombinedOutput(); err != nil {
		t.Errorf("openssl ts -verify (snapshot token): %v\n%s", err, out)
	}
}
