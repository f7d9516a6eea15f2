// Package server assembles the control plane: the store, the PKI, the agent
// gRPC endpoint, the admin API and the operations endpoints, in one process
// that can run as one of several stateless replicas (with Postgres).
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/toktra/toktra/controlplane/api"
	"github.com/toktra/toktra/controlplane/fleet"
	"github.com/toktra/toktra/controlplane/lockout"
	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/pipeline"
	"github.com/toktra/toktra/controlplane/ratelimit"
	"github.com/toktra/toktra/controlplane/snapshot"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/pg"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/triggers"
	"github.com/toktra/toktra/controlplane/usage"
	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/pki"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// Config configures a control-plane process.
type Config struct {
	// DataDir holds the PKI, the SQLite database (when no DatabaseURL) and
	// the bootstrap record. Created 0700 if missing.
	DataDir string
	// DatabaseURL selects Postgres ("postgres://..."); empty means SQLite in DataDir.
	DatabaseURL string
	// APIAddr is the admin API's HTTPS listen address.
	APIAddr string
	// AgentAddr is the agents' gRPC (TLS, mTLS after enrollment) listen address.
	AgentAddr string
	// OpsAddr serves /healthz, /readyz and /metrics over plain HTTP; keep it internal.
	OpsAddr string
	// TLSHosts are the names and addresses the server certificate covers.
	TLSHosts []string
	// KMSKeyID, when set, wraps secrets at rest with this AWS KMS key
	// instead of the local key file.
	KMSKeyID string
	// AllowProviderBaseURL lets admins point a provider connection at
	// another API root (tests, gateways); off in production.
	AllowProviderBaseURL bool
	// PublicURL is the admin API's URL as Okta and BambooHR reach it (for
	// the webhook URLs shown to admins); empty uses the request's host.
	PublicURL string
	// AllowAnyHRISURL lets Workday URLs use http and any host (tests).
	AllowAnyHRISURL bool
	// BambooHRBaseURL replaces BambooHR's API root (tests).
	BambooHRBaseURL string
	// JobTimeout and JobRescueAfter tune the lockout pipeline's jobs: how
	// long one attempt may run, and how long a job left running by a
	// crashed process waits before another picks it up (zero: defaults).
	JobTimeout, JobRescueAfter time.Duration
	// UsageRetention is how long LLM usage events are kept (zero: 400
	// days); UsageInterval how often the providers' usage is ingested
	// (zero: hourly).
	UsageRetention, UsageInterval time.Duration
	// SnapshotAckWait is how long a lockout's snapshot waits for its
	// devices' acknowledgements (zero: 5 minutes).
	SnapshotAckWait time.Duration
	// TrustedProxies may name the client in X-Forwarded-For (rate limits,
	// audit); empty trusts none.
	TrustedProxies []netip.Prefix
	// Evidence says where evidence is stored write-once.
	Evidence EvidenceConfig
	// Custody configures the chain of custody and its TSA.
	Custody CustodyConfig
	Logger  *slog.Logger
	Clock   clock.Clock
}

// Server is an assembled control plane.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    store.Store
	ca       *pki.CA
	keys     *pki.Keyring
	fleet    *fleet.Service
	lockout  *lockout.Service
	pipeline *pipeline.Pipeline
	objects  objectstore.Store
	custody  *Custody
	triggers *triggers.Service
	api      *api.Server
	reg      *prometheus.Registry
}

// Open prepares the data dir, store and PKI. It does not listen.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.DataDir == "" {
		return nil, errors.New("a data dir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pkiDir := filepath.Join(cfg.DataDir, "pki")
	ca, err := pki.LoadOrCreateCA(pkiDir, cfg.Clock.Now())
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	keys, err := pki.LoadOrCreateSigningKeys(pkiDir)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("loading command-signing keys: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	issuer := fleet.NewIssuer(st, keys, cfg.Clock)
	fl := fleet.NewService(fleet.Config{
		Store: st, CA: ca, Keys: keys, Issuer: issuer, Clock: cfg.Clock, Logger: cfg.Logger,
		Metrics: fleet.NewMetrics(reg, st),
	})
	sealer, err := openSealer(ctx, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	objects, evidenceHandler, err := openObjectStore(ctx, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	cust, err := OpenCustody(cfg.DataDir, cfg.Custody, st, checkpointSink{objects}, cfg.Clock, cfg.Logger)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("opening the chain of custody: %w", err)
	}
	evSigner, err := pki.LoadOrCreateEvidenceSigner(pkiDir, ca, cfg.Clock.Now())
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("loading the evidence-signing key: %w", err)
	}
	usageSvc := usage.NewService(st)
	provOpts := providerOptions(cfg.Logger, cfg.Clock)
	ingester, err := usage.NewIngester(usage.IngestConfig{
		Store: st, Open: usageReader(sealer, provOpts), Clock: cfg.Clock, Logger: cfg.Logger,
		Interval: cfg.UsageInterval, Retention: cfg.UsageRetention,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	// The triggers' jobs run on the pipeline's job client (one per database).
	trig, err := triggers.New(triggers.Config{
		Store: st, Sealer: sealer, Clock: cfg.Clock, Logger: cfg.Logger,
		BambooHRBaseURL: cfg.BambooHRBaseURL, AllowAnyHRISURL: cfg.AllowAnyHRISURL,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	pl, err := openPipeline(ctx, st, pipeline.Config{
		Store: st, Issuer: issuer, Clock: cfg.Clock, Logger: cfg.Logger, Registerer: reg,
		Connect: providerConnector(sealer, provOpts), JobTimeout: cfg.JobTimeout, RescueAfter: cfg.JobRescueAfter,
		Jobs: []pipeline.Jobs{{Queues: ingester.Queues(), Register: ingester.RegisterWorkers, Periodic: ingester.PeriodicJobs()}, trig.Jobs()},
		Evidence: &pipeline.Evidence{
			Usage: usageSvc, Custody: cust.Service, Objects: objects, TSAs: cust.TSAs, Timestamper: cust.Timestamper,
			Signer:  snapshot.Signer{Key: evSigner.Signer(), Chain: evSigner.Chain(), TSA: cust.Timestamper, Reason: "Toktra audit snapshot"},
			AckWait: cfg.SnapshotAckWait,
		},
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	lo := lockout.NewService(st, issuer, pl, cfg.Clock, cfg.Logger)
	trig.Attach(lo, pl.InsertTx)
	limits, err := rateLimits(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Server{
		cfg: cfg, log: cfg.Logger, store: st, ca: ca, keys: keys, fleet: fl, lockout: lo, pipeline: pl, objects: objects, triggers: trig, custody: cust,
		api: api.NewServer(api.Config{
			Store: st, Lockouts: lo, Fleet: fl, Clock: cfg.Clock, Logger: cfg.Logger, Limits: limits, Usage: usageSvc, Evidence: evidenceHandler, Objects: objects, Custody: cust.Service,
			Triggers: trig, PublicURL: cfg.PublicURL,
			Providers: api.ProviderConfig{Sealer: sealer, Options: provOpts, AllowBaseURL: cfg.AllowProviderBaseURL},
		}),
		reg: reg,
	}, nil
}

// openPipeline migrates the job queue's tables on the store's database and
// builds the pipeline on the matching River driver.
func openPipeline(ctx context.Context, st store.Store, cfg pipeline.Config) (*pipeline.Pipeline, error) {
	switch st := st.(type) {
	case *pg.Store:
		driver := riverpgxv5.New(st.Pool())
		if err := pipeline.Migrate(ctx, driver); err != nil {
			return nil, err
		}
		return pipeline.New(driver, cfg)
	case *sqlite.Store:
		driver := riversqlite.New(st.WriterDB())
		if err := pipeline.Migrate(ctx, driver); err != nil {
			return nil, err
		}
		return pipeline.New(driver, cfg)
	}
	return nil, fmt.Errorf("no job queue for store %T", st)
}

// openTriggers builds the triggers' job client on the store's database,
// whose job queue tables openPipeline migrated.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.DatabaseURL != "" {
		if !strings.HasPrefix(cfg.DatabaseURL, "postgres://") && !strings.HasPrefix(cfg.DatabaseURL, "postgresql://") {
			return nil, errors.New("database url must start with postgres://")
		}
		st, err := pg.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, fmt.Errorf("opening postgres: %w", err)
		}
		return st, nil
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "toktra.db"))
	if err != nil {
		return nil, fmt.Errorf("opening sqlite: %w", err)
	}
	return st, nil
}

// Close releases the store and the evidence directory.
func (s *Server) Close() error {
	if c, ok := s.objects.(io.Closer); ok {
		c.Close()
	}
	return s.store.Close()
}

// CAPin is the pin agents are given to trust this control plane at enrollment.
func (s *Server) CAPin() string { return s.ca.Pin() }

// Bootstrap is what `init` records about the first org.
type Bootstrap struct {
	OrgID      string        `json:"org_id"`
	OrgName    string        `json:"org_name"`
	CAPin      string        `json:"ca_pin"`
	CAFile     string        `json:"ca_file"`
	AdminKey   api.NewAPIKey `json:"admin_key"`
	APIAddr    string        `json:"api_addr,omitempty"`
	AgentAddr  string        `json:"agent_addr,omitempty"`
	FirstStart bool          `json:"-"`
}

const bootstrapFile = "bootstrap.json"

// Initialized reports whether the data dir already has its first org.
func (s *Server) Initialized() bool {
	_, err := os.Stat(filepath.Join(s.cfg.DataDir, bootstrapFile))
	return err == nil
}

// CreateOrg creates an org with its first admin API key.
func (s *Server) CreateOrg(ctx context.Context, name string) (Bootstrap, error) {
	now := s.cfg.Clock.Now()
	org, err := s.store.CreateOrg(ctx, store.CreateOrgParams{Name: name, CreatedAt: now})
	if err != nil {
		return Bootstrap{}, fmt.Errorf("creating org: %w", err)
	}
	key, err := api.CreateAPIKey(ctx, s.store, org.ID, "first admin key", store.ScopeAdmin, now, api.MaxAPIKeyLifetime)
	if err != nil {
		return Bootstrap{}, err
	}
	return Bootstrap{
		OrgID: org.ID, OrgName: org.Name, CAPin: s.ca.Pin(), CAFile: filepath.Join(s.cfg.DataDir, "pki", "ca.pem"),
		AdminKey: key, APIAddr: s.cfg.APIAddr, AgentAddr: s.cfg.AgentAddr,
	}, nil
}

// Init creates the first org once per data dir and records (without the
// key's secret) that it did. A second Init returns an error.
func (s *Server) Init(ctx context.Context, orgName string) (Bootstrap, error) {
	if s.Initialized() {
		return Bootstrap{}, fmt.Errorf("data dir %s is already initialized; use create-admin-key for a new key", s.cfg.DataDir)
	}
	b, err := s.CreateOrg(ctx, orgName)
	if err != nil {
		return Bootstrap{}, err
	}
	rec := b
	rec.AdminKey.Secret = ""
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return Bootstrap{}, err
	}
	if err := os.WriteFile(filepath.Join(s.cfg.DataDir, bootstrapFile), data, 0o600); err != nil {
		return Bootstrap{}, fmt.Errorf("recording bootstrap: %w", err)
	}
	b.FirstStart = true
	return b, nil
}

// NewAdminKey makes another admin key for an org, for an operator with
// access to the data dir (e.g. when every key expired).
func (s *Server) NewAdminKey(ctx context.Context, orgID, name string) (api.NewAPIKey, error) {
	if _, err := s.store.GetOrg(ctx, orgID); err != nil {
		return api.NewAPIKey{}, fmt.Errorf("org %s: %w", orgID, err)
	}
	return api.CreateAPIKey(ctx, s.store, orgID, name, store.ScopeAdmin, s.cfg.Clock.Now(), api.MaxAPIKeyLifetime)
}

// DefaultOrgID returns the org created by Init.
func (s *Server) DefaultOrgID() (string, error) {
	data, err := os.ReadFile(filepath.Join(s.cfg.DataDir, bootstrapFile))
	if err != nil {
		return "", fmt.Errorf("reading bootstrap record: %w", err)
	}
	var b Bootstrap
	if err := json.Unmarshal(data, &b); err != nil {
		return "", fmt.Errorf("decoding bootstrap record: %w", err)
	}
	return b.OrgID, nil
}

// Addrs are the addresses a running server listens on.
type Addrs struct {
	API, Agent, Ops string
}

// Run listens and serves until ctx ends, then shuts down gracefully.
// ready, if not nil, receives the bound addresses once all listeners are up.
func (s *Server) Run(ctx context.Context, ready func(Addrs)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.checkEvidenceStore(ctx); err != nil {
		return err
	}
	if err := s.fleet.Start(ctx); err != nil {
		return err
	}
	if err := s.pipeline.Start(ctx); err != nil {
		return fmt.Errorf("starting the lockout pipeline: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.pipeline.Stop(stopCtx); err != nil {
			s.log.Warn("stopping the lockout pipeline", "err", err)
		}
	}()
	if err := s.triggers.Start(ctx); err != nil {
		return fmt.Errorf("starting the triggers: %w", err)
	}
	serverCert, err := s.ca.IssueServerCert(s.cfg.TLSHosts, s.cfg.Clock.Now(), 90*24*time.Hour)
	if err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	tlsCfg := pki.ServerTLSConfig(s.ca, serverCert)

	agentLn, err := net.Listen("tcp", s.cfg.AgentAddr)
	if err != nil {
		return fmt.Errorf("listening for agents: %w", err)
	}
	apiLn, err := net.Listen("tcp", s.cfg.APIAddr)
	if err != nil {
		agentLn.Close()
		return fmt.Errorf("listening for the api: %w", err)
	}
	opsLn, err := net.Listen("tcp", s.cfg.OpsAddr)
	if err != nil {
		agentLn.Close()
		apiLn.Close()
		return fmt.Errorf("listening for ops: %w", err)
	}

	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(1<<20),
		// Stop returns only once every handler has: the store closes after.
		grpc.WaitForHandlers(true),
	)
	agentv1.RegisterEnrollmentServiceServer(gs, s.fleet)
	agentv1.RegisterAgentServiceServer(gs, s.fleet)

	apiTLS := tlsCfg.Clone()
	apiTLS.ClientAuth = tls.NoClientCert
	apiTLS.NextProtos = []string{"h2", "http/1.1"}
	apiSrv := &http.Server{
		Handler: s.api, TLSConfig: apiTLS, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	opsSrv := &http.Server{Handler: s.opsHandler(), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 3)
	go func() { errc <- gs.Serve(agentLn) }()
	go func() { errc <- apiSrv.Serve(tls.NewListener(apiLn, apiTLS)) }()
	go func() { errc <- opsSrv.Serve(opsLn) }()
	addrs := Addrs{API: apiLn.Addr().String(), Agent: agentLn.Addr().String(), Ops: opsLn.Addr().String()}
	s.log.Info("control plane listening", "api", "https://"+addrs.API, "agents", addrs.Agent, "ops", "http://"+addrs.Ops, "ca_pin", s.ca.Pin())
	if ready != nil {
		ready(addrs)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer done()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = apiSrv.Shutdown(shutdownCtx) }()
	go func() { defer wg.Done(); _ = opsSrv.Shutdown(shutdownCtx) }()
	go func() {
		defer wg.Done()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-shutdownCtx.Done():
			gs.Stop()
		}
	}()
	wg.Wait()
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) && !errors.Is(runErr, grpc.ErrServerStopped) {
		return runErr
	}
	return nil
}

func (s *Server) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain")
		if err := s.store.Ping(ctx); err != nil {
			s.log.Warn("readiness check failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "store unavailable")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return mux
}

// rateLimits are the admin API's per-IP limits: 1000 requests per 5
// minutes on every route, 500 on the routes that need an admin key; and
// api.SCIMLimit SCIM requests per org in the same window.
func rateLimits(cfg Config) (api.RateLimits, error) {
	public, err := ratelimit.New(ratelimit.Config{Limit: ratelimit.PublicLimit, Window: ratelimit.DefaultWindow, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return api.RateLimits{}, err
	}
	admin, err := ratelimit.New(ratelimit.Config{Limit: ratelimit.AdminLimit, Window: ratelimit.DefaultWindow, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return api.RateLimits{}, err
	}
	// Per webhook (hook id): Okta allows an org about 400,000 deliveries a
	// day, some 1,400 per 5 minutes.
	webhook, err := ratelimit.New(ratelimit.Config{Limit: 3000, Window: ratelimit.DefaultWindow, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return api.RateLimits{}, err
	}
	scim, err := ratelimit.New(ratelimit.Config{Limit: api.SCIMLimit, Window: ratelimit.DefaultWindow, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return api.RateLimits{}, err
	}
	return api.RateLimits{Public: public, Admin: admin, SCIM: scim, Webhook: webhook, TrustedProxies: cfg.TrustedProxies}, nil
}
