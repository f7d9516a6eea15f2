package e2e

import (
	"encoding/json"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers/providertest/fakeanthropic"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeopenai"
)

const (
	openaiKey    = "sk-admin-e2e-openai-0123456789abcdef"
	anthropicKey = "sk-ant-admin01-e2e-anthropic-0123456789"
)

type fullLockout struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Providers []struct {
		Provider     string          `json:"provider"`
		State        string          `json:"state"`
		Confirmation json.RawMessage `json:"confirmation"`
	} `json:"providers"`
	Devices []struct {
		DeviceID     string `json:"device_id"`
		Kind         string `json:"kind"`
		Sequence     uint64 `json:"sequence"`
		State        string `json:"state"`
		CommandsSent int    `json:"commands_sent"`
	} `json:"devices"`
}

// providerFakes are fake OpenAI and Anthropic organizations served inside
// the control plane's namespace, where the server can reach them.
type providerFakes struct {
	openai    *fakeopenai.Fake
	anthropic *fakeanthropic.Fake
}

func startProviderFakes(t *testing.T, env *netEnv) providerFakes {
	t.Helper()
	listen := func() net.Listener {
		var ln net.Listener
		if err := inNS(env.cpNS, func() (err error) {
			ln, err = net.Listen("tcp", "127.0.0.1:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ln
	}
	f := providerFakes{openai: fakeopenai.NewOn(openaiKey, listen()), anthropic: fakeanthropic.NewOn(anthropicKey, listen())}
	t.Cleanup(f.openai.Close)
	t.Cleanup(f.anthropic.Close)
	f.openai.AddUser(fakeopenai.User{ID: "user-dave", Email: "dave@example.com", Role: "reader"})
	f.openai.AddUser(fakeopenai.User{ID: "user-erin", Email: "erin@example.com", Role: "owner"})
	f.openai.AddProject(fakeopenai.Project{ID: "proj_1", Name: "P1"}, "user-dave", "user-erin")
	f.openai.AddKey(fakeopenai.Key{ID: "key_dave", Project: "proj_1", OwnerUser: "user-dave"})
	f.openai.AddKey(fakeopenai.Key{ID: "key_erin", Project: "proj_1", OwnerUser: "user-erin"})
	f.anthropic.AddUser(fakeanthropic.User{ID: "user_dave", Email: "dave@example.com", Role: "developer"})
	f.anthropic.AddUser(fakeanthropic.User{ID: "user_erin", Email: "erin@example.com", Role: "admin"})
	f.anthropic.AddWorkspace(fakeanthropic.Workspace{ID: "wrkspc_1"}, "user_dave", "user_erin")
	f.anthropic.AddKey(fakeanthropic.Key{ID: "apikey_dave", Workspace: "wrkspc_1", CreatedBy: "user_dave", Status: "active"})
	f.anthropic.AddKey(fakeanthropic.Key{ID: "apikey_erin", Workspace: "wrkspc_1", CreatedBy: "user_erin", Status: "active"})
	return f
}

func (cp *controlPlane) lockout(t *testing.T, id string) fullLockout {
	t.Helper()
	var l fullLockout
	if code := cp.call(t, "GET", "/v1/lockouts/"+id, nil, &l); code != 200 {
		t.Fatalf("GET /v1/lockouts/%s = %d", id, code)
	}
	return l
}

// restart kills the server with SIGKILL and starts it again on the same
// data and database.
func (cp *controlPlane) crashAndRestart(t *testing.T) {
	t.Helper()
	cp.proc.kill()
	cp.start(t)
}

// TestCrashResume kills the real control plane (SIGKILL) in each step of a
// lockout and restarts it: every lockout completes, the providers end with
// the user removed and nobody else touched, and each device gets its lock
// once per sequence.
func TestCrashResume(t *testing.T) {
	requireRoot(t)
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			env := newNetEnv(t)
			dsn := ""
			if backend == "postgres" {
				dsn = newPostgresDatabase(t)
			}
			cp := startControlPlane(t, env, dsn)
			fakes := startProviderFakes(t, env)
			for name, body := range map[string]map[string]string{
				"openai":    {"admin_key": openaiKey, "base_url": fakes.openai.URL()},
				"anthropic": {"admin_key": anthropicKey, "base_url": fakes.anthropic.URL()},
			} {
				var out json.RawMessage
				if code := cp.call(t, "PUT", "/v1/providers/"+name, body, &out); code != 200 {
					t.Fatalf("connecting %s = %d: %s", name, code, out)
				}
			}
			agent := enrollAgent(t, env, cp, "dave@example.com")
			agent.start(t)
			waitAPI(t, "the device to come online", 30*time.Second, func() bool {
				var list struct{ Data []deviceResp }
				cp.call(t, "GET", "/v1/devices?email=dave@example.com", nil, &list)
				return len(list.Data) == 1 && list.Data[0].Online
			})

			// 1. Killed while a provider revocation is in flight.
			held, release := fakes.openai.Hold("DELETE", "/v1/organization")
			var lo fullLockout
			if code := cp.call(t, "POST", "/v1/lockouts", map[string]string{"email": "dave@example.com"}, &lo); code != 201 {
				t.Fatalf("POST /v1/lockouts = %d", code)
			}
			select {
			case <-held:
			case <-time.After(30 * time.Second):
				t.Fatal("the OpenAI revocation never reached the provider")
			}
			cp.crashAndRestart(t)
			release()
			done := waitLockoutDone(t, cp, lo.ID)
			for _, p := range done.Providers {
				if p.State != "confirmed" {
					t.Errorf("after the crash, %s revocation = %s: %s; want confirmed", p.Provider, p.State, p.Confirmation)
				}
			}
			oa, an := fakes.openai.Snapshot(), fakes.anthropic.Snapshot()
			if slices.Contains(oa.Users, "user-dave") || slices.Contains(oa.Keys, "key_dave") || !slices.Contains(oa.Keys, "key_erin") || !slices.Contains(oa.Users, "user-erin") {
				t.Errorf("OpenAI after the lockout = %+v; want dave and his key gone, erin untouched", oa)
			}
			if slices.Contains(an.Users, "user_dave") || an.Keys["apikey_dave"] != "inactive" || an.Keys["apikey_erin"] != "active" {
				t.Errorf("Anthropic after the lockout = %+v; want dave gone, his key inactive, erin's active", an)
			}
			if ok, refused, err := env.llmReachable(); ok || !refused {
				t.Errorf("device after the lockout: reachable=%v refused=%v err=%v; want refused", ok, refused, err)
			}
			assertOneLockPerDevice(t, done)
			assertEachResourceChangedOnce(t, "OpenAI", fakes.openai.Calls())
			assertEachResourceChangedOnce(t, "Anthropic", fakes.anthropic.Calls())

			// 2. Killed with the lock command stored but not acknowledged
			//    (the agent is down), then everything comes back.
			overrideAndWait(t, cp, env, lo.ID)
			agent.proc.kill()
			if code := cp.call(t, "POST", "/v1/lockouts", map[string]string{"email": "dave@example.com"}, &lo); code != 201 {
				t.Fatalf("second lockout = %d", code)
			}
			waitAPI(t, "the lock command to be stored", 30*time.Second, func() bool {
				return len(cp.lockout(t, lo.ID).Devices) == 1
			})
			cp.crashAndRestart(t)
			agent.start(t)
			done = waitLockoutDone(t, cp, lo.ID)
			assertOneLockPerDevice(t, done)
			waitFor(t, "the device to lock after both restarts", 30*time.Second, func() bool {
				ok, refused, _ := env.llmReachable()
				return !ok && refused
			})

			// 3. Killed right after the lockout was accepted, before any
			//    step ran.
			overrideAndWait(t, cp, env, lo.ID)
			if code := cp.call(t, "POST", "/v1/lockouts", map[string]string{"email": "dave@example.com"}, &lo); code != 201 {
				t.Fatalf("third lockout = %d", code)
			}
			cp.crashAndRestart(t)
			done = waitLockoutDone(t, cp, lo.ID)
			assertOneLockPerDevice(t, done)
			for _, p := range done.Providers {
				if p.State != "confirmed" {
					t.Errorf("third lockout: %s revocation = %s; want confirmed (nothing left to remove)", p.Provider, p.State)
				}
			}
		})
	}
}

func waitLockoutDone(t *testing.T, cp *controlPlane, id string) fullLockout {
	t.Helper()
	var l fullLockout
	waitAPI(t, "lockout "+id+" to finish", 60*time.Second, func() bool {
		l = cp.lockout(t, id)
		if len(l.Providers) != 2 || len(l.Devices) != 1 || l.Devices[0].State != "applied" {
			return false
		}
		for _, p := range l.Providers {
			if p.State == "pending" {
				return false
			}
		}
		return true
	})
	return l
}

// assertOneLockPerDevice: each device got exactly one lock command (one
// sequence) for the lockout, whatever was killed on the way.
func assertOneLockPerDevice(t *testing.T, l fullLockout) {
	t.Helper()
	for _, d := range l.Devices {
		if d.Kind != "lock" || d.Sequence == 0 || d.CommandsSent != 1 {
			t.Errorf("device %s: %+v; want exactly one lock", d.DeviceID, d)
		}
	}
}

// assertEachResourceChangedOnce: the provider saw one changing call per
// resource: the run after the crash found what the killed one had already
// removed gone, and did not remove it again.
func assertEachResourceChangedOnce(t *testing.T, name string, calls []fakeapi.Call) {
	t.Helper()
	seen := map[string]int{}
	for _, c := range calls {
		if c.Method != "GET" {
			seen[c.Method+" "+c.Path]++
		}
	}
	if len(seen) == 0 {
		t.Errorf("%s: no changing call reached the provider", name)
	}
	for call, n := range seen {
		if n != 1 {
			t.Errorf("%s: %s sent %d times; want once", name, call, n)
		}
	}
}

func overrideAndWait(t *testing.T, cp *controlPlane, env *netEnv, id string) {
	t.Helper()
	var out json.RawMessage
	if code := cp.call(t, "POST", "/v1/lockouts/"+id+"/override", map[string]string{"reason": "e2e"}, &out); code != 200 {
		t.Fatalf("override = %d: %s", code, out)
	}
	waitFor(t, "the unlock", 30*time.Second, func() bool {
		ok, _, _ := env.llmReachable()
		return ok
	})
}
