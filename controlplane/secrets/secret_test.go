package secrets_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/toktra/toktra/controlplane/secrets"
)

const plaintextKey = "sk-proj-VERYSECRETVALUE1234"

// leaks reports whether out shows any recognizable part of plaintextKey.
func leaks(out string) bool {
	return strings.Contains(out, "VERYSECRET") || strings.Contains(out, "1234") ||
		strings.Contains(strings.ToLower(out), strings.ToLower(fmt.Sprintf("%x", "VERYSECRET")))
}

type credential struct {
	Provider string
	APIKey   secrets.Secret
	Ptr      *secrets.Secret
}

func TestSecretFmt(t *testing.T) {
	t.Parallel()
	s := secrets.Secret(plaintextKey)
	c := credential{Provider: "openai", APIKey: s, Ptr: &s}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%20s", "%-8v", "%T %v"} {
		for _, arg := range []any{s, c, &c, []secrets.Secret{s}, map[string]secrets.Secret{"k": s}, *c.Ptr} {
			if out := fmt.Sprintf(verb, arg); leaks(out) {
				t.Errorf("Sprintf(%q, %T) = %q; leaks the secret", verb, arg, out)
			}
		}
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintln(s), s.String(), s.GoString(), fmt.Errorf("bad key %v", s).Error()} {
		if out = strings.TrimSpace(out); out != "[REDACTED]" && !strings.HasSuffix(out, " [REDACTED]") {
			t.Errorf("printed secret = %q; want [REDACTED]", out)
		}
	}
	if got := s.Reveal(); got != plaintextKey {
		t.Errorf("Reveal() = %q; want %q", got, plaintextKey)
	}
}

func TestSecretJSON(t *testing.T) {
	t.Parallel()
	s := secrets.Secret(plaintextKey)
	for _, v := range []any{s, &s, credential{Provider: "openai", APIKey: s, Ptr: &s}, map[string]secrets.Secret{"k": s}} {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T) = %v", v, err)
		}
		if leaks(string(out)) || !bytes.Contains(out, []byte(`"[REDACTED]"`)) {
			t.Errorf("json.Marshal(%T) = %s; want [REDACTED]", v, out)
		}
	}
	// Requests can still carry secrets in.
	var in struct{ APIKey secrets.Secret }
	if err := json.Unmarshal([]byte(`{"APIKey":"`+plaintextKey+`"}`), &in); err != nil || in.APIKey.Reveal() != plaintextKey {
		t.Errorf("json.Unmarshal into Secret = %q, %v; want %q", in.APIKey.Reveal(), err, plaintextKey)
	}
}

func TestSecretSlog(t *testing.T) {
	t.Parallel()
	s := secrets.Secret(plaintextKey)
	c := credential{Provider: "openai", APIKey: s, Ptr: &s}
	for _, tc := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	} {
		var buf bytes.Buffer
		log := slog.New(tc.new(&buf))
		log.Info("stored key", "key", s, slog.Any("any", s), "ptr", &s, "cred", c,
			slog.Group("g", "key", s))
		log.With("key", s).Info("with")
		if out := buf.String(); leaks(out) || !strings.Contains(out, "[REDACTED]") {
			t.Errorf("%s handler output %s leaks the secret", tc.name, out)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"short", "..."},
		{"12345678901", "..."},
		{"sk-abcdefghabcd", "sk-...abcd"},
		{"sk-proj-0123456789abcd", "sk-...abcd"},
		{"sk-ant-admin01-xyzxyzxyzWXYZ", "sk-...WXYZ"},
		{"sk_live_0123456789ab", "sk_...89ab"},
		{"plainsecretvalue0000", "...0000"},
		{"-leadingdash12345", "...2345"},
		{"ключ-секретный-1234", "...1234"},
	} {
		if got := secrets.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}
