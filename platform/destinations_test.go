package platform

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestDefaultDomains(t *testing.T) {
	t.Parallel()
	d := DefaultDomains()
	if !slices.IsSorted(d) {
		t.Error("DefaultDomains() is not sorted")
	}
	if c := slices.Compact(slices.Clone(d)); len(c) != len(d) {
		t.Errorf("DefaultDomains() has %d duplicates", len(d)-len(c))
	}
	for _, name := range d {
		if err := ValidateDomain(name); err != nil {
			t.Errorf("ValidateDomain(%q) = %v; default domains must be valid", name, err)
		}
		if name != strings.ToLower(name) || strings.HasSuffix(name, ".") {
			t.Errorf("default domain %q is not in canonical form (lower case, no trailing dot)", name)
		}
	}
	for _, must := range []string{
		"api.openai.com", "chatgpt.com", "api.anthropic.com", "claude.ai",
		"generativelanguage.googleapis.com", "gemini.google.com", "api.mistral.ai",
		"api.cohere.com", "api.x.ai", "api.deepseek.com", "api.groq.com",
		"api.together.xyz", "api.perplexity.ai", "*.openai.azure.com",
		"bedrock-runtime.us-east-1.amazonaws.com", "openrouter.ai",
		"router.huggingface.co", "api.replicate.com", "api.fireworks.ai",
	} {
		if !slices.Contains(d, must) {
			t.Errorf("DefaultDomains() lacks %q", must)
		}
	}
	d[0] = "mutated"
	if DefaultDomains()[0] == "mutated" {
		t.Error("DefaultDomains() returns the package's own slice")
	}
}

func TestValidateDomain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		wantErr string // substring; "" means valid
	}{
		{"api.openai.com", ""},
		{"API.OpenAI.com", ""},
		{"api.openai.com.", ""},
		{"*.openai.azure.com", ""},
		{"xn--bcher-kva.example", ""},
		{"bedrock-runtime.us-east-1.amazonaws.com", ""},
		{"a.b", ""},
		{"", "empty"},
		{".", "empty"},
		{"localhost", "not fully qualified"},
		{"*.com", "wildcard needs at least two labels"},
		{"api.*.com", "whole first label"},
		{"**.example.com", "character '*'"},
		{"a..b", "empty label"},
		{".example.com", "empty label"},
		{"example.com..", "empty label"},
		{"-api.example.com", "hyphen"},
		{"api-.example.com", "hyphen"},
		{"api_v1.example.com", "character '_'"},
		{"api.example.com/v1", "character '/'"},
		{"https://api.openai.com", "character ':'"},
		{"api example.com", "character ' '"},
		{"bücher.example", "punycode"},
		{"192.0.2.1", "IP addresses belong in CIDRs"},
		{strings.Repeat("a", 64) + ".example.com", "longer than 63"},
		{strings.Repeat("abcdefghi.", 26) + "com", "more than 253"},
	} {
		err := ValidateDomain(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ValidateDomain(%q) = %v; want nil", tc.in, err)
		case tc.wantErr != "" && err == nil:
			t.Errorf("ValidateDomain(%q) = nil; want error containing %q", tc.in, tc.wantErr)
		case err != nil && !strings.Contains(err.Error(), tc.wantErr):
			t.Errorf("ValidateDomain(%q) = %v; want error containing %q", tc.in, err, tc.wantErr)
		case err != nil && !errors.Is(err, ErrInvalidDestination):
			t.Errorf("ValidateDomain(%q) = %v; want it to wrap ErrInvalidDestination", tc.in, err)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "192.0.2.0/24", want: "192.0.2.0/24"},
		{in: "192.0.2.7", want: "192.0.2.7/32"},
		{in: " 192.0.2.7 ", want: "192.0.2.7/32"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "2001:db8::1", want: "2001:db8::1/128"},
		{in: "::ffff:192.0.2.7", want: "192.0.2.7/32"},
		{in: "::ffff:192.0.2.0/120", want: "192.0.2.0/24"},
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "", wantErr: "empty"},
		{in: "api.openai.com", wantErr: "not an address or network"},
		{in: "192.0.2.0/33", wantErr: "not an address or network"},
		{in: "192.0.2/24", wantErr: "not an address or network"},
		{in: "192.0.2.0/-1", wantErr: "not an address or network"},
		{in: "192.0.2.1/24", wantErr: "host bits set; the network is 192.0.2.0/24"},
		{in: "fe80::1%eth0", wantErr: "zoned"},
		{in: "fe80::%eth0/64", wantErr: "zoned"},
		{in: "0.0.0.0", wantErr: "unspecified"},
		{in: "::", wantErr: "unspecified"},
		{in: "0.0.0.0/0", wantErr: "loopback"},
		{in: "::/0", wantErr: "loopback"},
		{in: "127.0.0.1", wantErr: "loopback"},
		{in: "::1", wantErr: "loopback"},
		{in: "::ffff:127.0.0.1", wantErr: "loopback"},
	} {
		got, err := ParseCIDR(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseCIDR(%q) = %v; want %s", tc.in, err, tc.want)
		case tc.wantErr == "" && got.String() != tc.want:
			t.Errorf("ParseCIDR(%q) = %s; want %s", tc.in, got, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseCIDR(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
		case err != nil && !errors.Is(err, ErrInvalidDestination):
			t.Errorf("ParseCIDR(%q) = %v; want it to wrap ErrInvalidDestination", tc.in, err)
		}
	}
}

// FuzzParseCIDR checks that the admin API's validators never panic, that
// what ParseCIDR accepts is canonical and blockable, and that no string is
// both a valid domain and a valid CIDR.
func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{
		"192.0.2.0/24", "192.0.2.7", "2001:db8::/32", "2001:db8::1", "::ffff:192.0.2.0/120",
		"192.0.2.1/24", "fe80::1%eth0", "0.0.0.0/0", "127.0.0.1", "1.2.3.4/33", " 10.0.0.0/8 ",
		"api.openai.com", "*.openai.azure.com", "a..b", "xn--bcher-kva.example", "", "1.2.3.4",
		"::ffff:0:0/95", "0x7f.1", "1e100.net",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, cidrErr := ParseCIDR(s)
		if cidrErr == nil {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("ParseCIDR(%q) = %v; not canonical", s, p)
			}
			if p.Overlaps(netip.MustParsePrefix("127.0.0.0/8")) || p.Overlaps(netip.MustParsePrefix("::1/128")) {
				t.Fatalf("ParseCIDR(%q) = %v; covers loopback", s, p)
			}
			q, err := ParseCIDR(p.String())
			if err != nil || q != p {
				t.Fatalf("ParseCIDR(%q) = %v, but ParseCIDR(%q) = %v, %v", s, p, p.String(), q, err)
			}
		} else if !errors.Is(cidrErr, ErrInvalidDestination) {
			t.Fatalf("ParseCIDR(%q) error %v does not wrap ErrInvalidDestination", s, cidrErr)
		}
		domErr := ValidateDomain(s)
		if domErr == nil {
			if cidrErr == nil {
				t.Fatalf("%q is both a valid domain and a valid CIDR", s)
			}
			if err := ValidateDomain(strings.ToUpper(s)); err != nil {
				t.Fatalf("ValidateDomain(%q) = nil but ValidateDomain(upper) = %v", s, err)
			}
		} else if !errors.Is(domErr, ErrInvalidDestination) {
			t.Fatalf("ValidateDomain(%q) error %v does not wrap ErrInvalidDestination", s, domErr)
		}
	})
}

func TestProviderOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"api.openai.com", "openai"},
		{"API.OpenAI.com.", "openai"},
		{"chatgpt.com", "openai"},
		{"api.anthropic.com", "anthropic"},
		{"claude.ai", "anthropic"},
		{"generativelanguage.googleapis.com", "google"},
		{"bedrock-runtime.eu-west-1.amazonaws.com", "aws-bedrock"},
		{"contoso.openai.azure.com", "azure"},
		{"a.b.cognitiveservices.azure.com", "azure"},
		{"openai.azure.com", ProviderOther},
		{"*.openai.azure.com", "azure"},
		{"llm.internal.example", ProviderOther},
		{"foo.api.openai.com", ProviderOther},
		{"", ProviderOther},
		{"com", ProviderOther},
	} {
		if got := ProviderOf(tc.in); got != tc.want {
			t.Errorf("ProviderOf(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
	for _, d := range defaultDestinations {
		if d.provider == "" || d.provider != strings.ToLower(d.provider) || strings.ContainsAny(d.provider, " .") {
			t.Errorf("provider %q of %s is not a stable lower-case name", d.provider, d.domain)
		}
		if got := ProviderOf(d.domain); got != d.provider {
			t.Errorf("ProviderOf(%q) = %q; want %q", d.domain, got, d.provider)
		}
	}
}
