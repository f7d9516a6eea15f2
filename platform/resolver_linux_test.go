//go:build linux

package platform

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolverNetNSHostsFile checks the system-resolver semantics end to
// end: a process started with `ip netns exec NAME` sees
// /etc/netns/NAME/hosts as /etc/hosts, and the resolver's defaults honour
// it.
func TestResolverNetNSHostsFile(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	name := "tk-r-" + randomID(t)
	addNetNS(t, name)
	dir := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for file, content := range map[string]string{
		"hosts": "127.0.0.1 localhost\n192.0.2.77 api.example.test\n2001:db8::77 api.example.test\n",
		// Nothing answers there (the namespace has no links up): only
		// the hosts file can give an answer.
		"resolv.conf": "nameserver 192.0.2.53\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0])
	cmd.Env = append(os.Environ(), resolveHelperEnv+"=api.example.test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper in namespace %s: %v\n%s", name, err, out)
	}
	for _, want := range []string{
		"DOMAIN api.example.test hosts <nil>",
		"ENTRY 192.0.2.77/32 10m0s",
		"ENTRY 2001:db8::77/128 10m0s",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("helper output lacks %q:\n%s", want, out)
		}
	}
}
