package secrets_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/toktra/toktra/controlplane/secrets"
)

// setupKMS returns a fake KMS with one key (aliased "alias/toktra") and a
// Sealer whose KEK names the key by keyRef ("arn" or the alias).
func setupKMS(t *testing.T, keyRef string) (*fakeKMS, *secrets.Sealer, *secrets.KMSKEK, string) {
	t.Helper()
	fake, srv := newFakeKMS(t)
	arn := fake.createKey("alias/toktra")
	id := arn
	if keyRef == "alias" {
		id = "alias/toktra"
	}
	kek, err := secrets.NewKMSKEK(fake.client(srv), id)
	if err != nil {
		t.Fatalf("NewKMSKEK = %v", err)
	}
	return fake, secrets.NewSealer(secrets.NewKeyring(kek)), kek, arn
}

func TestKMSRoundTrip(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"arn", "alias"} {
		t.Run(ref, func(t *testing.T) {
			t.Parallel()
			fake, s, kek, arn := setupKMS(t, ref)
			ctx := context.Background()
			wantID := "kms:" + arn
			if ref == "alias" {
				wantID = "kms:alias/toktra"
			}
			if kek.KeyID() != wantID {
				t.Errorf("KeyID() = %q; want %q", kek.KeyID(), wantID)
			}
			for _, aad := range [][]byte{[]byte("org_x/provider/openai"), nil, {0xff, 0xfe}} {
				sealed, err := s.Seal(ctx, []byte("sk-ant-admin01-secret"), aad)
				if err != nil {
					t.Fatalf("Seal(aad %q) = %v", aad, err)
				}
				if id, _ := secrets.EnvelopeKEKID(sealed); id != wantID {
					t.Errorf("EnvelopeKEKID = %q; want %q", id, wantID)
				}
				got, err := s.Open(ctx, sealed, aad)
				if err != nil || string(got) != "sk-ant-admin01-secret" {
					t.Fatalf("Open(aad %q) = %q, %v", aad, got, err)
				}
			}
			want := []string{"TrentService.Encrypt", "TrentService.Decrypt"}
			if got := fake.targets(); !slices.Equal(got[:2], want) {
				t.Errorf("KMS calls = %q; want %q first", got, want)
			}
		})
	}
}

func TestKMSWrongAADAndTamper(t *testing.T) {
	t.Parallel()
	_, s, _, _ := setupKMS(t, "arn")
	ctx := context.Background()
	aad := []byte("org_x/provider/openai")
	sealed, err := s.Seal(ctx, []byte("sk-secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Open(ctx, sealed, []byte("org_y/provider/openai"))
	if !errors.Is(err, secrets.ErrAuthentication) || !strings.Contains(err.Error(), "InvalidCiphertextException") {
		t.Errorf("Open(wrong aad) = %v; want ErrAuthentication from InvalidCiphertextException", err)
	}
	flipEveryByte(t, s, sealed, aad, 0x01)
}

func TestKMSErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	aad := []byte("org_x/provider/openai")
	for _, tc := range []struct {
		name     string
		breakKMS func(f *fakeKMS, arn string) // applied after a secret is sealed
		sealErr  bool                         // the break stops Seal
		openErr  bool                         // the break stops Open
		want     error
		wantCode string
	}{
		{"encrypt denied", func(f *fakeKMS, _ string) { f.deny("kms:Encrypt") }, true, false, secrets.ErrKEKAccessDenied, "AccessDeniedException"},
		{"decrypt denied", func(f *fakeKMS, _ string) { f.deny("kms:Decrypt") }, false, true, secrets.ErrKEKAccessDenied, "AccessDeniedException"},
		{"key disabled", func(f *fakeKMS, arn string) { f.disable(arn) }, true, true, secrets.ErrKEKUnavailable, "DisabledException"},
		{"key deleted", func(f *fakeKMS, arn string) {
			f.mu.Lock()
			delete(f.keys, arn)
			f.mu.Unlock()
		}, true, true, secrets.ErrKEKUnavailable, "NotFoundException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, s, _, arn := setupKMS(t, "arn")
			sealed, err := s.Seal(ctx, []byte("sk-secret"), aad)
			if err != nil {
				t.Fatal(err)
			}
			tc.breakKMS(fake, arn)
			got, err := s.Open(ctx, sealed, aad)
			if tc.openErr {
				checkKMSErr(t, "Open", err, tc.want, tc.wantCode)
			} else if err != nil || string(got) != "sk-secret" {
				t.Errorf("Open = %q, %v; want sk-secret", got, err)
			}
			if tc.sealErr {
				_, err = s.Seal(ctx, []byte("sk-other"), aad)
				checkKMSErr(t, "Seal", err, tc.want, tc.wantCode)
			}
		})
	}
}

func checkKMSErr(t *testing.T, op string, err, want error, wantCode string) {
	t.Helper()
	t.Logf("%s error: %v", op, err)
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v; want %v", op, err, want)
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != wantCode {
		t.Errorf("%s error %v does not carry the KMS error %s", op, err, wantCode)
	}
	if wantCode == "AccessDeniedException" && !strings.Contains(err.Error(), "is not authorized to perform") {
		t.Errorf("%s = %q; want KMS's explanation in the message", op, err)
	}
}

// An alias pointed at a different key makes older envelopes fail loudly
// (IncorrectKeyException), which is why NewKMSKEK recommends key ARNs.
func TestKMSAliasRepointed(t *testing.T) {
	t.Parallel()
	fake, s, _, _ := setupKMS(t, "alias")
	ctx := context.Background()
	sealed, err := s.Seal(ctx, []byte("sk-secret"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	fake.createKey("alias/toktra")
	_, err = s.Open(ctx, sealed, []byte("a"))
	checkKMSErr(t, "Open", err, secrets.ErrAuthentication, "IncorrectKeyException")
}

// Moving from a local key file to KMS: open what the local KEK sealed,
// re-wrap under KMS, then the local key is no longer needed.
func TestMigrateLocalToKMS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	aad := []byte("org_x/hris/bamboohr")
	localSealer, local, _ := setupLocal(t)
	old, err := localSealer.Seal(ctx, []byte("bamboo-key"), aad)
	if err != nil {
		t.Fatal(err)
	}
	_, _, kek, _ := setupKMS(t, "arn")
	s := secrets.NewSealer(secrets.NewKeyring(kek, local))
	moved, err := s.Rewrap(ctx, old, aad)
	if err != nil {
		t.Fatalf("Rewrap = %v", err)
	}
	if id, _ := secrets.EnvelopeKEKID(moved); id != kek.KeyID() {
		t.Errorf("EnvelopeKEKID(moved) = %q; want %q", id, kek.KeyID())
	}
	kmsOnly := secrets.NewSealer(secrets.NewKeyring(kek))
	if got, err := kmsOnly.Open(ctx, moved, aad); err != nil || !bytes.Equal(got, []byte("bamboo-key")) {
		t.Errorf("Open(moved) with KMS only = %q, %v", got, err)
	}
	if _, err := kmsOnly.Open(ctx, old, aad); !errors.Is(err, secrets.ErrUnknownKEK) {
		t.Errorf("Open(old) with KMS only = %v; want ErrUnknownKEK", err)
	}
}

func TestNewKMSKEKValidates(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeKMS(t)
	for _, tc := range []struct {
		name   string
		client secrets.KMSClient
		keyID  string
	}{
		{"nil client", nil, "alias/x"},
		{"empty key id", fake.client(srv), ""},
		{"key id too long", fake.client(srv), "alias/" + strings.Repeat("a", 250)},
	} {
		if _, err := secrets.NewKMSKEK(tc.client, tc.keyID); err == nil {
			t.Errorf("NewKMSKEK(%s) = nil error; want error", tc.name)
		}
	}
}
