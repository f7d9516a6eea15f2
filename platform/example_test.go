package platform_test

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/toktra/toktra/platform"
)

// An agent's lock: resolve the policy, apply it, refresh it before the DNS
// answers expire, and re-apply at once if someone removes it.
func Example_lock() {
	ctx := context.Background()
	log := slog.Default()

	if err := platform.ProbeNftables(platform.NftablesOptions{}); err != nil {
		log.Error("cannot enforce with nftables", "err", err) // tell the control plane
		return
	}
	enf, err := platform.NewNftables(platform.NftablesOptions{Logger: log})
	if err != nil {
		log.Error("starting enforcer", "err", err)
		return
	}
	defer enf.Close() // the block stays in force

	res := platform.NewResolver(platform.ResolverOptions{Logger: log})
	policy := platform.Policy{Domains: platform.DefaultDomains()}

	var (
		mu   sync.Mutex
		last platform.Targets
	)
	// refresh resolves the policy and applies it, returning when to
	// refresh next.
	refresh := func() time.Time {
		r, err := res.Resolve(ctx, policy) // per-domain failures are in r.Domains
		if err != nil {
			return time.Now().Add(time.Minute)
		}
		mu.Lock()
		defer mu.Unlock()
		if err := enf.Apply(ctx, r.Targets); err != nil {
			log.Error("applying block", "err", err)
			return time.Now().Add(10 * time.Second)
		}
		last = r.Targets
		return r.NextRefresh
	}
	next := refresh()

	// Tamper response: re-apply what was last applied.
	go enf.Watch(ctx, func() {
		if ok, err := enf.Active(ctx); err != nil || ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if err := enf.Apply(ctx, last); err != nil {
			log.Error("re-applying block", "err", err)
		}
	})

	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
			next = refresh()
		}
	}
}
