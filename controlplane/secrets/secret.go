package secrets

import (
	"fmt"
	"log/slog"
)

// redacted is what every printed form of a Secret shows.
const redacted = "[REDACTED]"

// Secret holds a plaintext credential in memory. Printing it with fmt (any
// verb), encoding it as JSON or text, or logging it with log/slog shows
// "[REDACTED]"; Reveal is the one way to get the value, so every use of the
// plaintext is explicit and easy to find.
//
// Decoding JSON into a Secret works as for a string, so request types can
// accept secrets while response types can never echo them. Caveat: fmt
// cannot call methods on unexported struct fields, so a Secret in an
// unexported field of a struct printed with %v is shown in full; keep
// secrets in exported fields or print them on their own.
type Secret string

var (
	_ fmt.Stringer   = Secret("")
	_ fmt.GoStringer = Secret("")
	_ fmt.Formatter  = Secret("")
	_ slog.LogValuer = Secret("")
)

// Reveal returns the plaintext.
func (s Secret) Reveal() string { return string(s) }

// String returns "[REDACTED]".
func (s Secret) String() string { return redacted }

// GoString returns "[REDACTED]", for %#v.
func (s Secret) GoString() string { return redacted }

// Format prints "[REDACTED]" for every verb and flag, including %x and %q.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON encodes the secret as the JSON string "[REDACTED]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[REDACTED]", for encoders other than JSON.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue makes log/slog print "[REDACTED]".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Redact shows enough of a secret to recognize it in API responses and the
// dashboard: a short vendor prefix such as "sk-" and the last four
// characters, e.g. "sk-...abcd". Secrets under 12 characters show only
// "...", so no more than a third of one is ever shown; an empty string stays
// empty.
func Redact(s string) string {
	if s == "" {
		return ""
	}
	r := []rune(s)
	if len(r) < 12 {
		return "..."
	}
	prefix := ""
	for i := 0; i < len(r) && i <= 3; i++ {
		if r[i] == '-' || r[i] == '_' {
			if i > 0 {
				prefix = string(r[:i+1])
			}
			break
		}
		if !isASCIIAlnum(r[i]) {
			break
		}
	}
	return prefix + "..." + string(r[len(r)-4:])
}

func isASCIIAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}
