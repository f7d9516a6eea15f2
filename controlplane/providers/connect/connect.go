// Package connect builds a provider connector by name, so that the API
// and the pipeline need not know every provider package.
package connect

import (
	"fmt"
	"slices"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/anthropic"
	"github.com/toktra/toktra/controlplane/providers/openai"
)

// Names lists the providers Toktra can revoke access at.
func Names() []string { return []string{"anthropic", "openai"} }

// Known reports whether name is a provider Toktra supports.
func Known(name string) bool { return slices.Contains(Names(), name) }

// New returns the connector for provider name with its admin key.
func New(name, adminKey string, opts providers.Options) (providers.Connector, error) {
	switch name {
	case "openai":
		return openai.New(adminKey, opts)
	case "anthropic":
		return anthropic.New(adminKey, opts)
	}
	return nil, fmt.Errorf("unknown provider %q (known: %v)", name, Names())
}
