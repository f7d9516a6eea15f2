package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ErrInvalidDestination is returned (wrapped, with the reason) for a domain
// or CIDR that cannot be part of a policy.
var ErrInvalidDestination = errors.New("invalid destination")

// ErrWildcardDomain is reported for a "*." domain: it names no host that DNS
// can resolve, so it blocks nothing by itself (see DefaultDomains).
var ErrWildcardDomain = errors.New("wildcard domain cannot be resolved")

// defaultDestinations is the maintained list behind DefaultDomains and
// ProviderOf: sorted by domain, without duplicates (a test checks both),
// with the provider's stable name (as usage telemetry reports it) and, in
// the comment, the provider and service in words.
//
// Wildcards: some services live on per-customer hostnames that no list can
// enumerate — Azure OpenAI gives every resource its own name under
// openai.azure.com (contoso.openai.azure.com), Azure AI Foundry under
// services.ai.azure.com and cognitiveservices.azure.com, Hugging Face's
// dedicated endpoints under endpoints.huggingface.cloud. DNS cannot expand
// "*.openai.azure.com", and blocking the parent domain's addresses would not
// help (each resource resolves on its own), so the "*." entries are kept to
// say where these services live and are matched only by the hostnames an
// organization lists explicitly in its policy (add
// "contoso.openai.azure.com" to block that resource). The resolver reports
// them with ErrWildcardDomain instead of resolving them.
//
// Shared front ends: addresses are blocked, not names. Names served from a
// provider's shared front ends (gemini.google.com and *.googleapis.com on
// Google's, several chat apps on Cloudflare's) share addresses with other
// services, which are then blocked on the locked device too.
var defaultDestinations = []defaultDestination{
	{"*.cognitiveservices.azure.com", "azure"},                      // Azure OpenAI: per-resource endpoints (see above)
	{"*.endpoints.huggingface.cloud", "huggingface"},                // Hugging Face: dedicated Inference Endpoints (see above)
	{"*.openai.azure.com", "azure"},                                 // Azure OpenAI: per-resource endpoints (see above)
	{"*.services.ai.azure.com", "azure"},                            // Azure AI Foundry: per-resource endpoints (see above)
	{"ab.chatgpt.com", "openai"},                                    // OpenAI: ChatGPT
	{"ai.azure.com", "azure"},                                       // Azure AI Foundry: portal
	{"aiplatform.googleapis.com", "google"},                         // Google Vertex AI: Gemini on Google Cloud
	{"aistudio.google.com", "google"},                               // Google Gemini: AI Studio
	{"alkalimakersuite-pa.clients6.google.com", "google"},           // Google Gemini: AI Studio backend
	{"anthropic.com", "anthropic"},                                  // Anthropic: website
	{"api-inference.huggingface.co", "huggingface"},                 // Hugging Face: serverless Inference API
	{"api.ai21.com", "ai21"},                                        // AI21 Labs: API
	{"api.anthropic.com", "anthropic"},                              // Anthropic: API, Claude Code
	{"api.cerebras.ai", "cerebras"},                                 // Cerebras: inference API
	{"api.cohere.ai", "cohere"},                                     // Cohere: API (older hostname)
	{"api.cohere.com", "cohere"},                                    // Cohere: API
	{"api.deepseek.com", "deepseek"},                                // DeepSeek: API
	{"api.fireworks.ai", "fireworks"},                               // Fireworks AI: API
	{"api.githubcopilot.com", "github-copilot"},                     // GitHub Copilot: chat API
	{"api.groq.com", "groq"},                                        // Groq: API
	{"api.llama.com", "meta"},                                       // Meta: Llama API
	{"api.mistral.ai", "mistral"},                                   // Mistral AI: API
	{"api.moonshot.ai", "moonshot"},                                 // Moonshot AI (Kimi): API
	{"api.openai.com", "openai"},                                    // OpenAI: API, Codex
	{"api.perplexity.ai", "perplexity"},                             // Perplexity: API
	{"api.replicate.com", "replicate"},                              // Replicate: API
	{"api.together.ai", "together"},                                 // Together AI: API
	{"api.together.xyz", "together"},                                // Together AI: API (older hostname)
	{"api.x.ai", "xai"},                                             // xAI: API
	{"auth.openai.com", "openai"},                                   // OpenAI: sign-in
	{"auth0.openai.com", "openai"},                                  // OpenAI: sign-in (older hostname)
	{"bard.google.com", "google"},                                   // Google Gemini: former Bard hostname
	{"bedrock-runtime.ap-northeast-1.amazonaws.com", "aws-bedrock"}, // Amazon Bedrock: model invocation
	{"bedrock-runtime.ap-northeast-2.amazonaws.com", "aws-bedrock"}, // Amazon Bedrock: model invocation
	{"bedrock-runtime.ap-south-1.amazonaws.com", "aws-bedrock"},     // Amazon Bedrock: model invocation
	{"bedrock-runtime.ap-southeast-1.amazonaws.com", "aws-bedrock"}, // Amazon Bedrock: model invocation
	{"bedrock-runtime.ap-southeast-2.amazonaws.com", "aws-bedrock"}, // Amazon Bedrock: model invocation
	{"bedrock-runtime.ca-central-1.amazonaws.com", "aws-bedrock"},   // Amazon Bedrock: model invocation
	{"bedrock-runtime.eu-central-1.amazonaws.com", "aws-bedrock"},   // Amazon Bedrock: model invocation
	{"bedrock-runtime.eu-north-1.amazonaws.com", "aws-bedrock"},     // Amazon Bedrock: model invocation
	{"bedrock-runtime.eu-west-1.amazonaws.com", "aws-bedrock"},      // Amazon Bedrock: model invocation
	{"bedrock-runtime.eu-west-2.amazonaws.com", "aws-bedrock"},      // Amazon Bedrock: model invocation
	{"bedrock-runtime.eu-west-3.amazonaws.com", "aws-bedrock"},      // Amazon Bedrock: model invocation
	{"bedrock-runtime.sa-east-1.amazonaws.com", "aws-bedrock"},      // Amazon Bedrock: model invocation
	{"bedrock-runtime.us-east-1.amazonaws.com", "aws-bedrock"},      // Amazon Bedrock: model invocation
	{"bedrock-runtime.us-east-2.amazonaws.com", "aws-bedrock"},      // Amazon Bedrock: model invocation
	{"bedrock-runtime.us-west-2.amazonaws.com", "aws-bedrock"},      // Amazon Bedrock: model invocation
	{"bedrock.ap-northeast-1.amazonaws.com", "aws-bedrock"},         // Amazon Bedrock: control plane
	{"bedrock.ap-northeast-2.amazonaws.com", "aws-bedrock"},         // Amazon Bedrock: control plane
	{"bedrock.ap-south-1.amazonaws.com", "aws-bedrock"},             // Amazon Bedrock: control plane
	{"bedrock.ap-southeast-1.amazonaws.com", "aws-bedrock"},         // Amazon Bedrock: control plane
	{"bedrock.ap-southeast-2.amazonaws.com", "aws-bedrock"},         // Amazon Bedrock: control plane
	{"bedrock.ca-central-1.amazonaws.com", "aws-bedrock"},           // Amazon Bedrock: control plane
	{"bedrock.eu-central-1.amazonaws.com", "aws-bedrock"},           // Amazon Bedrock: control plane
	{"bedrock.eu-north-1.amazonaws.com", "aws-bedrock"},             // Amazon Bedrock: control plane
	{"bedrock.eu-west-1.amazonaws.com", "aws-bedrock"},              // Amazon Bedrock: control plane
	{"bedrock.eu-west-2.amazonaws.com", "aws-bedrock"},              // Amazon Bedrock: control plane
	{"bedrock.eu-west-3.amazonaws.com", "aws-bedrock"},              // Amazon Bedrock: control plane
	{"bedrock.sa-east-1.amazonaws.com", "aws-bedrock"},              // Amazon Bedrock: control plane
	{"bedrock.us-east-1.amazonaws.com", "aws-bedrock"},              // Amazon Bedrock: control plane
	{"bedrock.us-east-2.amazonaws.com", "aws-bedrock"},              // Amazon Bedrock: control plane
	{"bedrock.us-west-2.amazonaws.com", "aws-bedrock"},              // Amazon Bedrock: control plane
	{"cdn.oaistatic.com", "openai"},                                 // OpenAI: ChatGPT web app assets
	{"character.ai", "character-ai"},                                // Character.AI
	{"chat.deepseek.com", "deepseek"},                               // DeepSeek: chat
	{"chat.mistral.ai", "mistral"},                                  // Mistral AI: Le Chat
	{"chat.openai.com", "openai"},                                   // OpenAI: ChatGPT (older hostname)
	{"chat.qwen.ai", "alibaba"},                                     // Alibaba Qwen: chat
	{"chatgpt.com", "openai"},                                       // OpenAI: ChatGPT
	{"claude.ai", "anthropic"},                                      // Anthropic: Claude apps
	{"claude.com", "anthropic"},                                     // Anthropic: Claude
	{"codestral.mistral.ai", "mistral"},                             // Mistral AI: Codestral API
	{"cohere.com", "cohere"},                                        // Cohere: website
	{"console.anthropic.com", "anthropic"},                          // Anthropic: developer console
	{"console.groq.com", "groq"},                                    // Groq: console
	{"console.mistral.ai", "mistral"},                               // Mistral AI: console
	{"console.x.ai", "xai"},                                         // xAI: console
	{"copilot-proxy.githubusercontent.com", "github-copilot"},       // GitHub Copilot: completions
	{"copilot.microsoft.com", "microsoft-copilot"},                  // Microsoft Copilot
	{"dashboard.cohere.com", "cohere"},                              // Cohere: dashboard
	{"dashscope-intl.aliyuncs.com", "alibaba"},                      // Alibaba Qwen: API (international)
	{"dashscope.aliyuncs.com", "alibaba"},                           // Alibaba Qwen: API
	{"deepseek.com", "deepseek"},                                    // DeepSeek: website
	{"files.oaiusercontent.com", "openai"},                          // OpenAI: ChatGPT file uploads
	{"fireworks.ai", "fireworks"},                                   // Fireworks AI: website and console
	{"gemini.google.com", "google"},                                 // Google Gemini: app
	{"generativelanguage.googleapis.com", "google"},                 // Google Gemini: API
	{"grok.com", "xai"},                                             // xAI: Grok
	{"groq.com", "groq"},                                            // Groq: website
	{"integrate.api.nvidia.com", "nvidia"},                          // NVIDIA NIM: hosted API
	{"makersuite.google.com", "google"},                             // Google Gemini: AI Studio (older hostname)
	{"meta.ai", "meta"},                                             // Meta AI
	{"mistral.ai", "mistral"},                                       // Mistral AI: website
	{"notebooklm.google.com", "google"},                             // Google NotebookLM
	{"oai.azure.com", "azure"},                                      // Azure OpenAI: studio
	{"openai.com", "openai"},                                        // OpenAI: website
	{"openrouter.ai", "openrouter"},                                 // OpenRouter: API and website
	{"perplexity.ai", "perplexity"},                                 // Perplexity
	{"platform.claude.com", "anthropic"},                            // Anthropic: developer platform
	{"platform.deepseek.com", "deepseek"},                           // DeepSeek: developer platform
	{"platform.openai.com", "openai"},                               // OpenAI: developer platform
	{"poe.com", "poe"},                                              // Poe
	{"replicate.com", "replicate"},                                  // Replicate: website
	{"router.huggingface.co", "huggingface"},                        // Hugging Face: Inference Providers
	{"sora.chatgpt.com", "openai"},                                  // OpenAI: Sora
	{"sora.com", "openai"},                                          // OpenAI: Sora
	{"together.ai", "together"},                                     // Together AI: website
	{"us-central1-aiplatform.googleapis.com", "google"},             // Google Vertex AI: us-central1
	{"www.meta.ai", "meta"},                                         // Meta AI
	{"www.perplexity.ai", "perplexity"},                             // Perplexity
	{"x.ai", "xai"},                                                 // xAI: website
}

// defaultDestination is one line of the maintained list.
type defaultDestination struct {
	domain   string
	provider string
}

// DefaultDomains returns the maintained list of LLM provider domains that a
// lock blocks unless the organization's policy says otherwise. The result
// is sorted and free of duplicates; the caller may modify it.
func DefaultDomains() []string {
	out := make([]string, len(defaultDestinations))
	for i, d := range defaultDestinations {
		out[i] = d.domain
	}
	return out
}

// ProviderOther is the provider of destinations outside the maintained
// list: an organization's own domains and networks.
const ProviderOther = "other"

// ProviderOf names the LLM provider that serves domain, as usage telemetry
// reports it ("openai", "anthropic", "google", "aws-bedrock", ...), from
// the maintained list: the domain itself, or the nearest "*." entry above
// it (contoso.openai.azure.com is "azure"). Case and a trailing dot do not
// matter. Domains the list does not know are ProviderOther.
func ProviderOf(domain string) string {
	name := strings.ToLower(strings.TrimSuffix(domain, "."))
	if p, ok := lookupDefault(name); ok {
		return p
	}
	for rest := name; ; {
		_, parent, ok := strings.Cut(rest, ".")
		if !ok || !strings.Contains(parent, ".") {
			return ProviderOther
		}
		if p, ok := lookupDefault("*." + parent); ok {
			return p
		}
		rest = parent
	}
}

func lookupDefault(name string) (string, bool) {
	i, ok := slices.BinarySearchFunc(defaultDestinations, name, func(d defaultDestination, n string) int {
		return strings.Compare(d.domain, n)
	})
	if !ok {
		return "", false
	}
	return defaultDestinations[i].provider, true
}

// ValidateDomain checks that s can name destinations in a policy: a fully
// qualified host name of at least two labels (letters, digits, hyphens;
// internationalized names in their xn-- form), optionally with one trailing
// dot, or such a name under a leading "*." wildcard label. Errors wrap
// ErrInvalidDestination and say what is wrong.
func ValidateDomain(s string) error {
	if err := validateDomain(s); err != nil {
		return fmt.Errorf("%w: domain %q: %s", ErrInvalidDestination, s, err)
	}
	return nil
}

func validateDomain(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > 253 {
		return fmt.Errorf("%d characters long, more than 253", len(name))
	}
	wildcard := strings.HasPrefix(name, "*.")
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	for _, l := range labels {
		if err := validateLabel(l); err != nil {
			return err
		}
	}
	if len(labels) < 2 {
		if wildcard {
			return errors.New("a wildcard needs at least two labels after \"*.\"")
		}
		return errors.New("not fully qualified (needs at least two labels, like example.com)")
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return errors.New("all-numeric top-level label; IP addresses belong in CIDRs")
	}
	return nil
}

func validateLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label")
	case l == "*":
		return errors.New("a wildcard may only be the whole first label (\"*.example.com\")")
	case len(l) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for _, r := range l {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
		case r > 127:
			return fmt.Errorf("label %q has non-ASCII characters; use the punycode (xn--) form", l)
		default:
			return fmt.Errorf("label %q has the character %q", l, r)
		}
	}
	return nil
}

// ParseCIDR parses a network ("192.0.2.0/24", "2001:db8::/32") or a bare
// address (taken as /32 or /128) for a policy. It refuses what would be a
// mistake to block: host bits set ("192.0.2.1/24" is ambiguous), zoned
// addresses, the unspecified address, and anything covering loopback, which
// would cut the device off from itself. IPv4-mapped IPv6 forms are returned
// as IPv4. Errors wrap ErrInvalidDestination and say what is wrong.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := parseCIDR(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: cidr %q: %s", ErrInvalidDestination, s, err)
	}
	return p, nil
}

var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		if strings.Contains(s, "%") {
			return netip.Prefix{}, errors.New("zoned addresses cannot be blocked")
		}
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, errors.New("not an address or network (want forms like 192.0.2.0/24, 2001:db8::/32, 192.0.2.7)")
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not an address or network (want forms like 192.0.2.0/24, 2001:db8::/32, 192.0.2.7)")
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("zoned addresses cannot be blocked")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set; the network is %s", m)
	}
	p, err := normalizePrefix(p)
	if err != nil {
		return netip.Prefix{}, err
	}
	switch {
	case p.Addr().IsUnspecified() && p.IsSingleIP():
		return netip.Prefix{}, errors.New("the unspecified address cannot be blocked")
	case p.Overlaps(loopback4) || p.Overlaps(loopback6):
		return netip.Prefix{}, errors.New("covers loopback addresses, which would cut the device off from itself")
	}
	return p, nil
}
