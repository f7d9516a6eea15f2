package store_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// The hash encoding is a format others verify against: this vector was
// computed independently from AuditHash's documentation, so any change to
// the encoding fails here.
func TestAuditHashVector(t *testing.T) {
	t.Parallel()
	e := store.AuditEntry{
		OrgID: "org_1", Seq: 2, ID: "aud_1", At: time.UnixMicro(1764000000123456),
		Actor: "api-key:key_1", Action: "lockouts.create", Target: store.AuditTarget{Type: "lockouts", ID: "lck_1"},
		Detail: json.RawMessage(`{"status":201}`), RemoteIP: "192.0.2.1", PrevHash: make([]byte, 32),
	}
	const want = "da29e246095bd606154297c1f5c140e3963b923c527ce3a448182a1e725191d3"
	if got := hex.EncodeToString(store.AuditHash(e)); got != want {
		t.Errorf("AuditHash(vector) = %s; want %s", got, want)
	}
}

func TestNewAuditEntryCanonicalDetail(t *testing.T) {
	t.Parallel()
	p := store.AppendAuditParams{OrgID: "org_1", At: time.Unix(1, 0), Actor: "system", Action: "x",
		Detail: json.RawMessage("{ \"q\" : \"<a&b>\u2028\" }")}
	e, err := store.NewAuditEntry(p, "aud_1", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"q":"\u003ca\u0026b\u003e\u2028"}`; string(e.Detail) != want {
		t.Errorf("NewAuditEntry(detail).Detail = %s; want %s", e.Detail, want)
	}
	if err := store.VerifyAuditChain([]store.AuditEntry{e}); err != nil {
		t.Errorf("VerifyAuditChain(first entry) = %v; want nil", err)
	}
}

func ExampleVerifyAuditChain() {
	var chain []store.AuditEntry
	var prev []byte
	for i, action := range []string{"lockouts.create", "policy.update"} {
		e, err := store.NewAuditEntry(store.AppendAuditParams{
			OrgID: "org_1", At: time.Unix(1764000000, 0), Actor: "system", Action: action,
		}, fmt.Sprintf("aud_%d", i+1), uint64(i), prev)
		if err != nil {
			panic(err)
		}
		chain, prev = append(chain, e), e.Hash
	}
	fmt.Println(store.VerifyAuditChain(chain))
	chain[0].Actor = "someone else"
	fmt.Println(store.VerifyAuditChain(chain))
	// Output:
	// <nil>
	// audit entry 1 (aud_1): hash does not match its contents
}
