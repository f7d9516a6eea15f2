package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

const defaultStateDir = "/var/lib/toktra"

// newPlatform probes nftables once and wires the enforcer, the resolver
// and the tamper watch. Without nftables the agent still runs (and says
// so to the control plane) but cannot enforce.
func newPlatform(log *slog.Logger) (osPlatform, error) {
	caps := &agentv1.Capabilities{Unsupported: map[string]string{}}
	if err := platform.ProbeNftables(platform.NftablesOptions{}); err != nil {
		return osPlatform{}, fmt.Errorf("nftables cannot enforce here: %w", err)
	}
	caps.Enforcers = append(caps.Enforcers, "nftables")
	caps.Unsupported["ebpf-cgroup-connect"] = "not implemented in this agent version"
	nft, err := platform.NewNftables(platform.NftablesOptions{Logger: log})
	if err != nil {
		return osPlatform{}, err
	}
	return osPlatform{
		enforcer: nft,
		resolver: platform.NewResolver(platform.ResolverOptions{Logger: log}),
		watch: func(ctx context.Context, onChange func()) {
			if err := nft.Watch(ctx, onChange); err != nil {
				log.Warn("nftables watch unavailable; relying on periodic checks", "err", err)
			}
		},
		caps: caps,
	}, nil
}
