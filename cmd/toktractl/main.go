// Command toktractl is the admin CLI: everything the dashboard does, from a
// terminal or a script (--json).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "toktractl:", err)
		os.Exit(1)
	}
}

const usage = `usage: toktractl [global flags] <resource> <action> [args]

  lockout create EMAIL                 lock a user out of every enrolled device
  lockout status ID [--watch]          a lockout and each device's state
  lockout list [--state open|overridden] [--email EMAIL]
  lockout override ID --reason TEXT    the deliberate admin unlock
  users list
  devices list [--email EMAIL]
  devices show ID
  devices revoke ID                    refuse the device's certificate from now on
  enrollment-secrets create --name N [--ttl 168h]
  enrollment-secrets list
  enrollment-secrets revoke ID
  policy get
  policy set [--domain D]... [--cidr C]...
  providers list
  providers connect NAME --admin-key-file PATH   connect openai or anthropic (key read from a file, or - for stdin)
  providers disconnect NAME
  audit-log [--actor A] [--action X] [--target T] [--from RFC3339] [--to RFC3339] [--limit N]
  api-keys create --name N [--scope admin|read-only] [--expires-in 720h]
  api-keys list
  api-keys revoke ID
  custody verify --node NODE.json --tsa-root ROOT.pem   check a custody node offline (no server; see custody verify -h)

global flags (or environment):
  --server URL      TOKTRA_SERVER   (default https://127.0.0.1:8443)
  --api-key KEY     TOKTRA_API_KEY
  --ca-file PATH    TOKTRA_CA_FILE  (default ./toktra-data/pki/ca.pem)
  --json            print the API's JSON
`

type client struct {
	base   *url.URL
	key    string
	http   *http.Client
	asJSON bool
	out    io.Writer
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("toktractl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	server := fs.String("server", envOr("TOKTRA_SERVER", "https://127.0.0.1:8443"), "")
	apiKey := fs.String("api-key", os.Getenv("TOKTRA_API_KEY"), "")
	caFile := fs.String("ca-file", envOr("TOKTRA_CA_FILE", "./toktra-data/pki/ca.pem"), "")
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) >= 1 && rest[0] == "custody" {
		return runCustody(rest[1:], stdout, stderr)
	}
	if len(rest) >= 1 && rest[0] == "audit-log" {
		rest = append([]string{"audit-log", "list"}, rest[1:]...)
	}
	if len(rest) < 2 {
		fmt.Fprint(stderr, usage)
		return errors.New("a resource and an action are required")
	}
	if *apiKey == "" {
		return errors.New("an API key is required (--api-key or TOKTRA_API_KEY)")
	}
	base, err := url.Parse(*server)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return fmt.Errorf("--server %q: want https://host:port", *server)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("reading --ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("--ca-file %s: no certificate", *caFile)
	}
	c := &client{
		base: base, key: *apiKey, asJSON: *asJSON, out: stdout,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool},
		}},
	}
	ctx := context.Background()
	resource, action, args := rest[0], rest[1], rest[2:]
	switch resource + " " + action {
	case "lockout create":
		email, err := oneArg(args, "EMAIL")
		if err != nil {
			return err
		}
		return c.show(ctx, "POST", "/v1/lockouts", map[string]string{"email": email}, printLockout)
	case "lockout status":
		return c.lockoutStatus(ctx, args)
	case "lockout list":
		sub := flag.NewFlagSet("lockout list", flag.ContinueOnError)
		sub.SetOutput(stderr)
		state := sub.String("state", "", "open or overridden")
		email := sub.String("email", "", "only this user's lockouts")
		if err := sub.Parse(args); err != nil {
			return err
		}
		return c.showPages(ctx, "/v1/lockouts", url.Values{"state": {*state}, "email": {*email}}, printLockouts)
	case "providers list":
		return c.show(ctx, "GET", "/v1/providers", nil, printProviders)
	case "providers connect":
		sub := flag.NewFlagSet("providers connect", flag.ContinueOnError)
		sub.SetOutput(stderr)
		keyFile := sub.String("admin-key-file", "", "file holding the provider's admin key, or - for standard input (never on the command line)")
		name, err := parseWithID(sub, args)
		if err != nil {
			return err
		}
		key, err := readSecret(*keyFile)
		if err != nil {
			return err
		}
		return c.show(ctx, "PUT", "/v1/providers/"+url.PathEscape(name), map[string]string{"admin_key": key}, printProvider)
	case "providers disconnect":
		name, err := oneArg(args, "NAME")
		if err != nil {
			return err
		}
		if err := c.do(ctx, "DELETE", "/v1/providers/"+url.PathEscape(name), nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "disconnected", name)
		return nil
	case "lockout override":
		sub := flag.NewFlagSet("override", flag.ContinueOnError)
		sub.SetOutput(stderr)
		reason := sub.String("reason", "", "why the lockout is overridden (required)")
		id, err := parseWithID(sub, args)
		if err != nil {
			return err
		}
		if *reason == "" {
			return errors.New("--reason is required")
		}
		return c.show(ctx, "POST", "/v1/lockouts/"+url.PathEscape(id)+"/override", map[string]string{"reason": *reason}, printLockout)
	case "users list":
		return c.show(ctx, "GET", "/v1/users", nil, printUsers)
	case "devices list":
		sub := flag.NewFlagSet("devices list", flag.ContinueOnError)
		sub.SetOutput(stderr)
		email := sub.String("email", "", "only this user's devices")
		if err := sub.Parse(args); err != nil {
			return err
		}
		path := "/v1/devices"
		if *email != "" {
			path += "?email=" + url.QueryEscape(*email)
		}
		return c.show(ctx, "GET", path, nil, printDevices)
	case "devices show":
		id, err := oneArg(args, "ID")
		if err != nil {
			return err
		}
		return c.show(ctx, "GET", "/v1/devices/"+url.PathEscape(id), nil, printDevice)
	case "devices revoke":
		id, err := oneArg(args, "ID")
		if err != nil {
			return err
		}
		return c.show(ctx, "POST", "/v1/devices/"+url.PathEscape(id)+"/revoke", nil, printDevice)
	case "enrollment-secrets create":
		sub := flag.NewFlagSet("enrollment-secrets create", flag.ContinueOnError)
		sub.SetOutput(stderr)
		name := sub.String("name", "", "a name for the secret (required)")
		ttl := sub.String("ttl", "", "lifetime, e.g. 168h (default 7 days)")
		if err := sub.Parse(args); err != nil {
			return err
		}
		return c.show(ctx, "POST", "/v1/enrollment-secrets", map[string]string{"name": *name, "ttl": *ttl}, printSecret)
	case "enrollment-secrets list":
		return c.show(ctx, "GET", "/v1/enrollment-secrets", nil, printSecrets)
	case "enrollment-secrets revoke":
		id, err := oneArg(args, "ID")
		if err != nil {
			return err
		}
		if err := c.do(ctx, "DELETE", "/v1/enrollment-secrets/"+url.PathEscape(id), nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "revoked", id)
		return nil
	case "api-keys create":
		sub := flag.NewFlagSet("api-keys create", flag.ContinueOnError)
		sub.SetOutput(stderr)
		name := sub.String("name", "", "a name for the key (required)")
		scope := sub.String("scope", "read-only", "admin or read-only")
		expires := sub.String("expires-in", "", "lifetime, e.g. 720h (default and maximum 90 days)")
		if err := sub.Parse(args); err != nil {
			return err
		}
		return c.show(ctx, "POST", "/v1/api-keys", map[string]string{"name": *name, "scope": *scope, "expires_in": *expires}, printNewAPIKey)
	case "audit-log list":
		sub := flag.NewFlagSet("audit-log", flag.ContinueOnError)
		sub.SetOutput(stderr)
		q := url.Values{}
		for _, name := range []string{"actor", "action", "target", "from", "to", "limit"} {
			sub.Func(name, "filter by "+name, func(v string) error { q.Set(name, v); return nil })
		}
		if err := sub.Parse(args); err != nil {
			return err
		}
		return c.showPages(ctx, "/v1/audit-log", q, printAudit)
	case "api-keys list":
		return c.show(ctx, "GET", "/v1/api-keys", nil, printAPIKeys)
	case "api-keys revoke":
		id, err := oneArg(args, "ID")
		if err != nil {
			return err
		}
		if err := c.do(ctx, "DELETE", "/v1/api-keys/"+url.PathEscape(id), nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "revoked", id)
		return nil
	case "policy get":
		return c.show(ctx, "GET", "/v1/policy", nil, printPolicy)
	case "policy set":
		sub := flag.NewFlagSet("policy set", flag.ContinueOnError)
		sub.SetOutput(stderr)
		var domains, cidrs listFlag
		sub.Var(&domains, "domain", "an LLM domain to block (repeat)")
		sub.Var(&cidrs, "cidr", "an LLM network to block (repeat)")
		if err := sub.Parse(args); err != nil {
			return err
		}
		return c.show(ctx, "PUT", "/v1/policy", map[string][]string{"domains": domains.nonNil(), "cidrs": cidrs.nonNil()}, printPolicy)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", resource+" "+action)
}

func (c *client) lockoutStatus(ctx context.Context, args []string) error {
	sub := flag.NewFlagSet("lockout status", flag.ContinueOnError)
	watch := sub.Bool("watch", false, "refresh until every device answered")
	id, err := parseWithID(sub, args)
	if err != nil {
		return err
	}
	path := "/v1/lockouts/" + url.PathEscape(id)
	for {
		var raw json.RawMessage
		if err := c.do(ctx, "GET", path, nil, &raw); err != nil {
			return err
		}
		if err := c.render(raw, printLockout); err != nil {
			return err
		}
		var l lockout
		if err := json.Unmarshal(raw, &l); err != nil {
			return err
		}
		if !*watch || l.settled() {
			return nil
		}
		time.Sleep(time.Second)
		fmt.Fprintln(c.out)
	}
}

// showPages follows next_cursor to the end and prints every page.
func (c *client) showPages(ctx context.Context, path string, q url.Values, print func(io.Writer, json.RawMessage) error) error {
	for k, v := range q {
		if len(v) == 0 || v[0] == "" {
			delete(q, k)
		}
	}
	for {
		var raw json.RawMessage
		p := path
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		if err := c.do(ctx, "GET", p, nil, &raw); err != nil {
			return err
		}
		if err := c.render(raw, print); err != nil {
			return err
		}
		var page struct {
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(raw, &page); err != nil || page.NextCursor == "" {
			return err
		}
		q.Set("cursor", page.NextCursor)
	}
}

// readSecret reads a secret from a file or standard input, so it never
// appears in the process list or shell history.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", errors.New("--admin-key-file is required (a file, or - for standard input)")
	}
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("reading the admin key: %w", err)
	}
	key := strings.TrimSpace(string(data))
	if key == "" {
		return "", errors.New("the admin key file is empty")
	}
	return key, nil
}

// show calls the API and prints the result as a table, or JSON with --json.
func (c *client) show(ctx context.Context, method, path string, body any, print func(io.Writer, json.RawMessage) error) error {
	var raw json.RawMessage
	if err := c.do(ctx, method, path, body, &raw); err != nil {
		return err
	}
	return c.render(raw, print)
}

func (c *client) render(raw json.RawMessage, print func(io.Writer, json.RawMessage) error) error {
	if c.asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := c.out.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	if err := print(tw, raw); err != nil {
		return err
	}
	return tw.Flush()
}

func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base.JoinPath()
	ref, err := url.Parse(path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.ResolveReference(ref).String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("%s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

func oneArg(args []string, name string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		return "", fmt.Errorf("want exactly one %s", name)
	}
	return args[0], nil
}

// parseWithID accepts the ID before or after the flags.
func parseWithID(fs *flag.FlagSet, args []string) (string, error) {
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if id == "" {
		return "", errors.New("an ID is required")
	}
	return id, nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
func (l listFlag) nonNil() []string {
	if l == nil {
		return []string{}
	}
	return l
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
