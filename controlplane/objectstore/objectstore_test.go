package objectstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

func TestVerifyingReader(t *testing.T) {
	t.Parallel()
	body := []byte("evidence")
	tests := []struct {
		name    string
		content []byte
		size    int64
		want    Digest
		wantErr error
	}{
		{"intact", body, int64(len(body)), Sum(body), nil},
		{"changed byte", []byte("evidencE"), int64(len(body)), Sum(body), ErrCorrupt},
		{"truncated", body[:4], int64(len(body)), Sum(body), ErrCorrupt},
		{"longer", append(append([]byte{}, body...), 'x'), int64(len(body)), Sum(body), ErrCorrupt},
	}
	for _, tt := range tests {
		r := VerifyingReader(io.NopCloser(bytes.NewReader(tt.content)), "k", tt.size, tt.want)
		got, err := io.ReadAll(r)
		if !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && err == nil) {
			t.Errorf("%s: ReadAll(VerifyingReader) = %q, %v; want err %v", tt.name, got, err, tt.wantErr)
		}
		if tt.wantErr == nil && !bytes.Equal(got, body) {
			t.Errorf("%s: ReadAll(VerifyingReader) = %q; want %q", tt.name, got, body)
		}
	}
}

func TestCheckBody(t *testing.T) {
	t.Parallel()
	body := []byte("pdf")
	if got, err := CheckBody(PutParams{Key: "k", Body: body}); err != nil || got != Sum(body) {
		t.Errorf("CheckBody(no sum) = %v, %v; want %v", got, err, Sum(body))
	}
	if _, err := CheckBody(PutParams{Key: "k", Body: body, SHA256: Sum(body)}); err != nil {
		t.Errorf("CheckBody(right sum) = %v; want nil", err)
	}
	if _, err := CheckBody(PutParams{Key: "k", Body: body, SHA256: Sum([]byte("other"))}); !errors.Is(err, ErrChecksumMismatch) {
		t.Errorf("CheckBody(wrong sum) = %v; want ErrChecksumMismatch", err)
	}
}

func TestDigestText(t *testing.T) {
	t.Parallel()
	d := Sum([]byte("x"))
	b, err := json.Marshal(struct{ D Digest }{d})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ D Digest }
	if err := json.Unmarshal(b, &back); err != nil || back.D != d {
		t.Errorf("json round trip of %s = %s, %v; want %s", d, back.D, err, d)
	}
	if _, err := ParseDigest("abc"); err == nil {
		t.Error(`ParseDigest("abc") = nil error; want an error`)
	}
	if got, err := ParseDigestBase64(d.Base64()); err != nil || got != d {
		t.Errorf("ParseDigestBase64(%s) = %s, %v; want %s", d.Base64(), got, err, d)
	}
	if _, err := ParseDigestBase64("AAAA"); err == nil {
		t.Error(`ParseDigestBase64("AAAA") = nil error; want an error`)
	}
}
