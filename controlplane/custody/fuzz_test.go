package custody

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// FuzzVerifyNode feeds arbitrary node JSON, as `toktractl custody verify`
// reads it, through VerifyNode: nothing may panic, and whatever passes
// must hash to its stated hash and carry a token over that hash.
func FuzzVerifyNode(f *testing.F) {
	local, err := tsa.LoadOrCreateLocal(filepath.Join(f.TempDir(), "tsa"), clock.Real{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	payload := []byte(`{"applied":true}`)
	at := time.UnixMicro(1741064767123456).UTC()
	parent := PayloadHash([]byte("parent"))
	h := NodeHash("org_1", "lck_1", KindDeviceAck, "dev_1", [][]byte{parent}, PayloadHash(payload), at)
	tok, err := local.Timestamp(context.Background(), h)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(Node{OrgID: "org_1", Hash: hex.EncodeToString(h), LockoutID: "lck_1", Kind: KindDeviceAck, Subject: "dev_1",
		Parents: []string{hex.EncodeToString(parent)}, PayloadHash: hex.EncodeToString(PayloadHash(payload)), Payload: payload, At: at, Token: tok.DER})
	f.Add(good)
	f.Add([]byte(`{"hash":"00","parents":["zz"],"payload_hash":""}`))
	f.Add([]byte(`{}`))
	roots := local.Roots()
	f.Fuzz(func(t *testing.T, data []byte) {
		var n Node
		if json.Unmarshal(data, &n) != nil {
			return
		}
		tk, err := VerifyNode(n, nil, roots)
		if err != nil {
			return
		}
		computed, cerr := n.ComputeHash()
		claimed, herr := n.HashBytes()
		if cerr != nil || herr != nil || !bytes.Equal(computed, claimed) || !bytes.Equal(tk.Digest, claimed) {
			t.Fatalf("VerifyNode accepted a node whose hash %s does not match its fields or token", n.Hash)
		}
	})
}
