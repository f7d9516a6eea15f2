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

// defaultDomains is the maintained list behind DefaultDomains: sorted,
// without duplicates (a test checks both), with the provider and service on
// each line.
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
var defaultDomains = []string{
	"*.cognitiveservices.azure.com",                // Azure OpenAI: per-resource endpoints (see above)
	"*.endpoints.huggingface.cloud",                // Hugging Face: dedicated Inference Endpoints (see above)
	"*.openai.azure.com",                           // Azure OpenAI: per-resource endpoints (see above)
	"*.services.ai.azure.com",                      // Azure AI Foundry: per-resource endpoints (see above)
	"ab.chatgpt.com",                               // OpenAI: ChatGPT
	"ai.azure.com",                                 // Azure AI Foundry: portal
	"aiplatform.googleapis.com",                    // Google Vertex AI: Gemini on Google Cloud
	"aistudio.google.com",                          // Google Gemini: AI Studio
	"alkalimakersuite-pa.clients6.google.com",      // Google Gemini: AI Studio backend
	"anthropic.com",                                // Anthropic: website
	"api-inference.huggingface.co",                 // Hugging Face: serverless Inference API
	"api.ai21.com",                                 // AI21 Labs: API
	"api.anthropic.com",                            // Anthropic: API, Claude Code
	"api.cerebras.ai",                              // Cerebras: inference API
	"api.cohere.ai",                                // Cohere: API (older hostname)
	"api.cohere.com",                               // Cohere: API
	"api.deepseek.com",                             // DeepSeek: API
	"api.fireworks.ai",                             // Fireworks AI: API
	"api.githubcopilot.com",                        // GitHub Copilot: chat API
	"api.groq.com",                                 // Groq: API
	"api.llama.com",                                // Meta: Llama API
	"api.mistral.ai",                               // Mistral AI: API
	"api.moonshot.ai",                              // Moonshot AI (Kimi): API
	"api.openai.com",                               // OpenAI: API, Codex
	"api.perplexity.ai",                            // Perplexity: API
	"api.replicate.com",                            // Replicate: API
	"api.together.ai",                              // Together AI: API
	"api.together.xyz",                             // Together AI: API (older hostname)
	"api.x.ai",                                     // xAI: API
	"auth.openai.com",                              // OpenAI: sign-in
	"auth0.openai.com",                             // OpenAI: sign-in (older hostname)
	"bard.google.com",                              // Google Gemini: former Bard hostname
	"bedrock-runtime.ap-northeast-1.amazonaws.com", // Amazon Bedrock: model invocation
	"bedrock-runtime.ap-northeast-2.amazonaws.com", // Amazon Bedrock: model invocation
	"bedrock-runtime.ap-south-1.amazonaws.com",     // Amazon Bedrock: model invocation
	"bedrock-runtime.ap-southeast-1.amazonaws.com", // Amazon Bedrock: model invocation
	"bedrock-runtime.ap-southeast-2.amazonaws.com", // Amazon Bedrock: model invocation
	"bedrock-runtime.ca-central-1.amazonaws.com",   // Amazon Bedrock: model invocation
	"bedrock-runtime.eu-central-1.amazonaws.com",   // Amazon Bedrock: model invocation
	"bedrock-runtime.eu-north-1.amazonaws.com",     // Amazon Bedrock: model invocation
	"bedrock-runtime.eu-west-1.amazonaws.com",      // Amazon Bedrock: model invocation
	"bedrock-runtime.eu-west-2.amazonaws.com",      // Amazon Bedrock: model invocation
	"bedrock-runtime.eu-west-3.amazonaws.com",      // Amazon Bedrock: model invocation
	"bedrock-runtime.sa-east-1.amazonaws.com",      // Amazon Bedrock: model invocation
	"bedrock-runtime.us-east-1.amazonaws.com",      // Amazon Bedrock: model invocation
	"bedrock-runtime.us-east-2.amazonaws.com",      // Amazon Bedrock: model invocation
	"bedrock-runtime.us-west-2.amazonaws.com",      // Amazon Bedrock: model invocation
	"bedrock.ap-northeast-1.amazonaws.com",         // Amazon Bedrock: control plane
	"bedrock.ap-northeast-2.amazonaws.com",         // Amazon Bedrock: control plane
	"bedrock.ap-south-1.amazonaws.com",             // Amazon Bedrock: control plane
	"bedrock.ap-southeast-1.amazonaws.com",         // Amazon Bedrock: control plane
	"bedrock.ap-southeast-2.amazonaws.com",         // Amazon Bedrock: control plane
	"bedrock.ca-central-1.amazonaws.com",           // Amazon Bedrock: control plane
	"bedrock.eu-central-1.amazonaws.com",           // Amazon Bedrock: control plane
	"bedrock.eu-north-1.amazonaws.com",             // Amazon Bedrock: control plane
	"bedrock.eu-west-1.amazonaws.com",              // Amazon Bedrock: control plane
	"bedrock.eu-west-2.amazonaws.com",              // Amazon Bedrock: control plane
	"bedrock.eu-west-3.amazonaws.com",              // Amazon Bedrock: control plane
	"bedrock.sa-east-1.amazonaws.com",              // Amazon Bedrock: control plane
	"bedrock.us-east-1.amazonaws.com",              // Amazon Bedrock: control plane
	"bedrock.us-east-2.amazonaws.com",              // Amazon Bedrock: control plane
	"bedrock.us-west-2.amazonaws.com",              // Amazon Bedrock: control plane
	"cdn.oaistatic.com",                            // OpenAI: ChatGPT web app assets
	"character.ai",                                 // Character.AI
	"chat.deepseek.com",                            // DeepSeek: chat
	"chat.mistral.ai",                              // Mistral AI: Le Chat
	"chat.openai.com",                              // OpenAI: ChatGPT (older hostname)
	"chat.qwen.ai",                                 // Alibaba Qwen: chat
	"chatgpt.com",                                  // OpenAI: ChatGPT
	"claude.ai",                                    // Anthropic: Claude apps
	"claude.com",                                   // Anthropic: Claude
	"codestral.mistral.ai",                         // Mistral AI: Codestral API
	"cohere.com",                                   // Cohere: website
	"console.anthropic.com",                        // Anthropic: developer console
	"console.groq.com",                             // Groq: console
	"console.mistral.ai",                           // Mistral AI: console
	"console.x.ai",                                 // xAI: console
	"copilot-proxy.githubusercontent.com",          // GitHub Copilot: completions
	"copilot.microsoft.com",                        // Microsoft Copilot
	"dashboard.cohere.com",                         // Cohere: dashboard
	"dashscope-intl.aliyuncs.com",                  // Alibaba Qwen: API (international)
	"dashscope.aliyuncs.com",                       // Alibaba Qwen: API
	"deepseek.com",                                 // DeepSeek: website
	"files.oaiusercontent.com",                     // OpenAI: ChatGPT file uploads
	"fireworks.ai",                                 // Fireworks AI: website and console
	"gemini.google.com",                            // Google Gemini: app
	"generativelanguage.googleapis.com",            // Google Gemini: API
	"grok.com",                                     // xAI: Grok
	"groq.com",                                     // Groq: website
	"integrate.api.nvidia.com",                     // NVIDIA NIM: hosted API
	"makersuite.google.com",                        // Google Gemini: AI Studio (older hostname)
	"meta.ai",                                      // Meta AI
	"mistral.ai",                                   // Mistral AI: website
	"notebooklm.google.com",                        // Google NotebookLM
	"oai.azure.com",                                // Azure OpenAI: studio
	"openai.com",                                   // OpenAI: website
	"openrouter.ai",                                // OpenRouter: API and website
	"perplexity.ai",                                // Perplexity
	"platform.claude.com",                          // Anthropic: developer platform
	"platform.deepseek.com",                        // DeepSeek: developer platform
	"platform.openai.com",                          // OpenAI: developer platform
	"poe.com",                                      // Poe
	"replicate.com",                                // Replicate: website
	"router.huggingface.co",                        // Hugging Face: Inference Providers
	"sora.chatgpt.com",                             // OpenAI: Sora
	"sora.com",                                     // OpenAI: Sora
	"together.ai",                                  // Together AI: website
	"us-central1-aiplatform.googleapis.com",        // Google Vertex AI: us-central1
	"www.meta.ai",                                  // Meta AI
	"www.perplexity.ai",                            // Perplexity
	"x.ai",                                         // xAI: website
}

// DefaultDomains returns the maintained list of LLM provider domains that a
// lock blocks unless the organization's policy says otherwise. The result
// is sorted and free of duplicates; the caller may modify it.
func DefaultDomains() []string {
	return slices.Clone(defaultDomains)
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
