// Command toktra-server runs the Toktra control plane.
//
//	toktra-server run              serve (initializing the data dir on first start)
//	toktra-server init             create the first org and print its admin key as JSON
//	toktra-server create-org       create another org and print its admin key as JSON
//	toktra-server create-admin-key print a new admin key for an org as JSON
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/ratelimit"
	"github.com/toktra/toktra/controlplane/server"
	"github.com/toktra/toktra/internal/logging"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "toktra-server:", err)
		os.Exit(1)
	}
}

const usage = `usage: toktra-server <command> [flags]

commands:
  run               serve the control plane (initializes the data dir on first start)
  init              create the first org; prints its admin API key as JSON
  create-org        create another org (--name); prints its admin API key as JSON
  create-admin-key  print a new admin API key for an org (--org, default the first) as JSON

Run "toktra-server <command> -h" for its flags.
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	fs.StringVar(&cfg.DataDir, "data-dir", envOr("TOKTRA_DATA_DIR", "./toktra-data"), "data directory (PKI, SQLite database)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv("TOKTRA_DATABASE_URL"), "Postgres URL (postgres://...); empty for the embedded SQLite")
	fs.StringVar(&cfg.APIAddr, "api-addr", envOr("TOKTRA_API_ADDR", "127.0.0.1:8443"), "admin API (HTTPS) listen address")
	fs.StringVar(&cfg.AgentAddr, "agent-addr", envOr("TOKTRA_AGENT_ADDR", ":8444"), "agent gRPC (TLS/mTLS) listen address")
	fs.StringVar(&cfg.OpsAddr, "ops-addr", envOr("TOKTRA_OPS_ADDR", "127.0.0.1:9090"), "health, readiness and metrics (plain HTTP) listen address")
	fs.StringVar(&cfg.KMSKeyID, "kms-key-id", os.Getenv("TOKTRA_KMS_KEY_ID"), "AWS KMS key (id, ARN or alias) that wraps secrets at rest; empty for the local key file in the data dir")
	fs.BoolVar(&cfg.AllowProviderBaseURL, "allow-provider-base-url", os.Getenv("TOKTRA_ALLOW_PROVIDER_BASE_URL") == "true", "let admins point provider connections at another API root (tests, gateways)")
	fs.StringVar(&cfg.PublicURL, "public-url", os.Getenv("TOKTRA_PUBLIC_URL"), "the admin API's URL as Okta and BambooHR reach it, for the webhook URLs shown to admins (default: the request's host)")
	fs.BoolVar(&cfg.AllowAnyHRISURL, "allow-any-hris-url", os.Getenv("TOKTRA_ALLOW_ANY_HRIS_URL") == "true", "let Workday URLs use http and hosts other than *.workday.com (tests)")
	fs.StringVar(&cfg.BambooHRBaseURL, "bamboohr-api-url", os.Getenv("TOKTRA_BAMBOOHR_API_URL"), "BambooHR's API root (default https://api.bamboohr.com; tests)")
	fs.DurationVar(&cfg.JobTimeout, "job-timeout", 0, "longest one attempt of a lockout step may run (default 60s)")
	fs.DurationVar(&cfg.JobRescueAfter, "job-rescue-after", 0, "how long a step left running by a crashed replica waits before it is run again (default 90s; must exceed --job-timeout)")
	fs.DurationVar(&cfg.UsageRetention, "usage-retention", 0, "how long LLM usage events are kept (default 9600h, 400 days; at least 2496h, the detector's 104 days)")
	fs.DurationVar(&cfg.UsageInterval, "usage-interval", 0, "how often the providers' usage reports are ingested (default 1h)")
	fs.StringVar(&cfg.Evidence.Store, "object-store", envOr("TOKTRA_OBJECT_STORE", server.EvidenceLocal), "where evidence is kept write-once: local (a directory in the data dir) or s3 (a bucket with Object Lock)")
	fs.StringVar(&cfg.Evidence.S3Bucket, "s3-bucket", envOr("TOKTRA_S3_BUCKET", objectstore.DefaultBucket), "S3 bucket for evidence; must have Object Lock enabled")
	fs.StringVar(&cfg.Evidence.S3Region, "s3-region", os.Getenv("TOKTRA_S3_REGION"), "the bucket's region (empty: AWS_REGION or the shared AWS config)")
	fs.StringVar(&cfg.Evidence.S3Endpoint, "s3-endpoint", os.Getenv("TOKTRA_S3_ENDPOINT"), "S3 endpoint URL for S3-compatible servers (empty: AWS)")
	fs.BoolVar(&cfg.Evidence.S3PathStyle, "s3-path-style", os.Getenv("TOKTRA_S3_PATH_STYLE") == "true", "address the bucket in the URL path (most S3-compatible servers)")
	cfg.Evidence.Retention = objectstore.DefaultRetention
	if v := os.Getenv("TOKTRA_EVIDENCE_RETENTION"); v != "" {
		if err := cfg.Evidence.Retention.Set(v); err != nil {
			return fmt.Errorf("TOKTRA_EVIDENCE_RETENTION: %w", err)
		}
	}
	fs.Var(&cfg.Evidence.Retention, "evidence-retention", "how long evidence is locked at least: a `period` in years and days (7y, 3650d, 1y30d); an org's longer minimum wins")
	fs.StringVar(&cfg.Custody.TSAURL, "tsa-url", os.Getenv("TOKTRA_TSA_URL"), "RFC 3161 time-stamping authority: local (a TSA in the data dir) or a URL (default local with SQLite, DigiCert's public TSA with Postgres)")
	fs.StringVar(&cfg.Custody.TSAFallbackURL, "tsa-fallback-url", os.Getenv("TOKTRA_TSA_FALLBACK_URL"), "RFC 3161 TSA asked when the first one fails")
	fs.StringVar(&cfg.Custody.TSARootsFile, "tsa-roots-file", os.Getenv("TOKTRA_TSA_ROOTS_FILE"), "PEM file of the roots a remote TSA must chain to (default DigiCert's, for DigiCert only)")
	fs.StringVar(&cfg.Custody.Origin, "custody-origin", os.Getenv("TOKTRA_CUSTODY_ORIGIN"), "the custody log's origin prefix in signed checkpoints, e.g. toktra.example.com/custody")
	fs.DurationVar(&cfg.SnapshotAckWait, "snapshot-ack-wait", 0, "how long a lockout's audit snapshot waits for its devices' acknowledgements (default 5m)")
	trusted := fs.String("trusted-proxies", os.Getenv("TOKTRA_TRUSTED_PROXIES"), "comma-separated proxy addresses or CIDRs whose X-Forwarded-For names the client")
	tlsHosts := fs.String("tls-hosts", envOr("TOKTRA_TLS_HOSTS", defaultTLSHosts()), "comma-separated names and IPs the server certificate covers")
	logFormat := fs.String("log-format", "auto", "log format: json, text or auto")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	orgName := fs.String("name", "Default organization", "org name (init, create-org)")
	orgID := fs.String("org", "", "org id (create-admin-key; default the first org)")
	switch cmd {
	case "run", "init", "create-org", "create-admin-key":
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Custody.TSAURL == "" {
		cfg.Custody.TSAURL = server.DefaultTSAURL(cfg.DatabaseURL)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.TLSHosts = splitList(*tlsHosts)
	trustedProxies, err := ratelimit.ParseTrustedProxies(*trusted)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	cfg.TrustedProxies = trustedProxies
	log, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()

	switch cmd {
	case "init":
		b, err := srv.Init(ctx, *orgName)
		if err != nil {
			return err
		}
		return printJSON(stdout, b)
	case "create-org":
		b, err := srv.CreateOrg(ctx, *orgName)
		if err != nil {
			return err
		}
		return printJSON(stdout, b)
	case "create-admin-key":
		id := *orgID
		if id == "" {
			if id, err = srv.DefaultOrgID(); err != nil {
				return err
			}
		}
		k, err := srv.NewAdminKey(ctx, id, "admin key (create-admin-key)")
		if err != nil {
			return err
		}
		return printJSON(stdout, k)
	}

	// run
	if !srv.Initialized() {
		b, err := srv.Init(ctx, *orgName)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, `
First start: created org %q (%s).
Its admin API key, shown only this once (also printed as JSON on stdout):

    %s

CA pin for agents and toktractl: %s
CA certificate: %s
More keys later: toktra-server create-admin-key --data-dir %s

`, b.OrgName, b.OrgID, b.AdminKey.Secret, b.CAPin, b.CAFile, cfg.DataDir)
		if err := printJSON(stdout, b); err != nil {
			return err
		}
	}
	return srv.Run(ctx, func(a server.Addrs) {
		fmt.Fprintf(stderr, "Toktra control plane ready: API https://%s  agents %s  metrics http://%s/metrics\n", a.API, a.Agent, a.Ops)
	})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func defaultTLSHosts() string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return strings.Join(hosts, ",")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
