package platform

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// resolveHelperEnv, when set, makes the test binary a helper process that
// resolves the domain it names with the default (system) configuration and
// prints the entries; see TestResolverNetNSHostsFile.
const resolveHelperEnv = "TOKTRA_TEST_RESOLVE_HELPER"

func TestMain(m *testing.M) {
	if domain := os.Getenv(resolveHelperEnv); domain != "" {
		os.Exit(resolveHelper(domain))
	}
	os.Exit(m.Run())
}

func resolveHelper(domain string) int {
	r := NewResolver(ResolverOptions{QueryTimeout: 500 * time.Millisecond})
	res, err := r.Resolve(context.Background(), Policy{Domains: []string{domain}})
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	for _, d := range res.Domains {
		fmt.Println("DOMAIN", d.Domain, d.Source, d.Err)
	}
	for _, e := range res.Targets.Entries {
		fmt.Println("ENTRY", e.Prefix, e.Timeout)
	}
	return 0
}
