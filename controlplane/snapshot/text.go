package snapshot

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"
)

// The embedded fonts: the Go family, which covers Latin, Greek and
// Cyrillic (WGL4). Text in other scripts is kept as text (it extracts,
// searches and copies exactly) but its glyphs do not show; the identity
// section therefore also prints such names as code points.
const (
	fontSans = "gosans"
	fontMono = "gomono"
)

var coverage = sync.OnceValue(func() *sfnt.Font {
	f, err := sfnt.Parse(goregular.TTF)
	if err != nil {
		panic("snapshot: parsing the embedded Go Regular font: " + err.Error())
	}
	return f
})

var fontFiles = []struct {
	family, style string
	ttf           []byte
}{
	{fontSans, "", goregular.TTF},
	{fontSans, "B", gobold.TTF},
	{fontMono, "", gomono.TTF},
}

// printable makes s safe to hand to the PDF writer: invalid UTF-8 and
// characters outside the Basic Multilingual Plane (which fpdf's Identity-H
// encoding cannot carry) become U+FFFD, and control characters other than
// newline become spaces.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || r > 0xFFFF || (unicode.IsControl(r) && r != '\n') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r > 0xFFFF || r == utf8.RuneError:
			b.WriteRune('\uFFFD')
		case unicode.IsControl(r) && r != '\n':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// uncovered reports whether s has characters the embedded font has no glyph
// for (ignoring spaces and controls).
func uncovered(s string) bool {
	f := coverage()
	var buf sfnt.Buffer
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			continue
		}
		if gi, err := f.GlyphIndex(&buf, r); err != nil || gi == 0 {
			return true
		}
	}
	return false
}

// codePoints spells s as Unicode code points, for names whose glyphs the
// font lacks: "U+5F20 U+4F1F".
func codePoints(s string) string {
	parts := make([]string, 0, len(s))
	for _, r := range s {
		parts = append(parts, fmt.Sprintf("U+%04X", r))
	}
	return strings.Join(parts, " ")
}

// timeFormat is how times are printed: UTC, to the second.
const timeFormat = "2006-01-02 15:04:05 UTC"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format(timeFormat)
}

// fmtExact prints a time with all its precision, RFC 3339 in UTC, where it
// must be matched against another record (custody, triggers).
func fmtExact(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// fmtInt prints an integer exactly, with thousands separators.
func fmtInt(v int64) string {
	s := strconv.FormatInt(v, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtFloat prints an evidence number compactly and stably.
func fmtFloat(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "—"
	}
	return s
}
