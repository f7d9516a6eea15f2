package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/snapshot"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// LocalTSA names the in-process TSA in CustodyConfig.TSAURL.
const LocalTSA = "local"

// CustodyConfig configures the chain of custody and time-stamping.
type CustodyConfig struct {
	// TSAURL is the RFC 3161 TSA asked first: LocalTSA for the TSA kept in
	// the data dir (the embedded default), or a URL such as tsa.DigiCertURL
	// (the production default; see DefaultTSAURL).
	TSAURL string
	// TSAFallbackURL is asked when the primary fails (remote TSAs only).
	TSAFallbackURL string
	// TSARootsFile is a PEM file of the roots remote TSAs must chain to;
	// empty trusts DigiCert's root when TSAURL is DigiCert's and is refused
	// for other remote TSAs.
	TSARootsFile string
	// Origin prefixes each org's checkpoint origin: the control plane's
	// public name, e.g. "toktra.example.com/custody".
	Origin string
}

// DefaultTSAURL is the TSA a deployment uses unless told otherwise:
// DigiCert's public TSA with Postgres (production), the local TSA with the
// embedded SQLite store.
func DefaultTSAURL(databaseURL string) string {
	if databaseURL != "" {
		return tsa.DigiCertURL
	}
	return LocalTSA
}

// Custody is the assembled chain of custody.
type Custody struct {
	Service *custody.Service
	// TSAURL names the TSA asked first: LocalTSA, or the remote primary.
	TSAURL string
	// TSARootPEM is the TSA root(s) tokens chain to, for verifiers and the
	// snapshot's verification instructions.
	TSARootPEM []byte
	// Timestamper is the TSA itself (in-process or the remote client), for
	// the snapshot's signature timestamp and its hash token.
	Timestamper custody.Timestamper
	// TSAs describes the TSA's signing certificate when it is known ahead
	// of any token (the local TSA), for the snapshot's custody record.
	TSAs []snapshot.TSA
}

// OpenCustody builds the TSA (local, in dataDir/tsa, called in-process;
// or a client of remote TSAs), the checkpoint key
// (dataDir/custody) and the custody service. sink may be nil.
func OpenCustody(dataDir string, cfg CustodyConfig, st store.Store, sink custody.CheckpointSink, clk clock.Clock, log *slog.Logger) (*Custody, error) {
	out := &Custody{}
	var ts custody.Timestamper
	switch cfg.TSAURL {
	case LocalTSA, "":
		local, err := tsa.LoadOrCreateLocal(filepath.Join(dataDir, "tsa"), clk, log)
		if err != nil {
			return nil, err
		}
		out.TSAURL, out.TSARootPEM, ts = LocalTSA, local.RootPEM(), local
		out.TSAs = []snapshot.TSA{snapshot.TSAFromCertificate("local TSA (this control plane's data dir)", "", local.SignerCertificate())}
	default:
		rootPEM := tsa.DigiCertRootPEM
		switch {
		case cfg.TSARootsFile != "":
			b, err := os.ReadFile(cfg.TSARootsFile)
			if err != nil {
				return nil, fmt.Errorf("reading TSA roots: %w", err)
			}
			rootPEM = b
		case cfg.TSAURL != tsa.DigiCertURL || (cfg.TSAFallbackURL != "" && cfg.TSAFallbackURL != tsa.DigiCertURL):
			return nil, errors.New("a TSA roots file is required for a TSA other than DigiCert's")
		}
		roots, err := tsa.ParseRootsPEM(rootPEM)
		if err != nil {
			return nil, err
		}
		client, err := tsa.NewClient(tsa.ClientConfig{PrimaryURL: cfg.TSAURL, FallbackURL: cfg.TSAFallbackURL, Roots: roots, Logger: log})
		if err != nil {
			return nil, err
		}
		out.TSAURL, out.TSARootPEM, ts = cfg.TSAURL, rootPEM, client
	}
	out.Timestamper = ts
	key, err := custody.LoadOrCreateCheckpointKey(filepath.Join(dataDir, "custody"), "toktra-custody")
	if err != nil {
		return nil, err
	}
	out.Service, err = custody.NewService(custody.Config{Store: st, TSA: ts, Key: key, Origin: cfg.Origin, Sink: sink, Clock: clk, Logger: log})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkpointSink writes each custody checkpoint (the signed note, and its
// RFC 3161 token beside it) to the write-once store: the anchor outside
// the database. A repeat with the same bytes is a no-op (objectstore.Put).
type checkpointSink struct{ objects objectstore.Store }

func (c checkpointSink) PutCheckpoint(ctx context.Context, orgID string, size uint64, note, token []byte) error {
	key, err := objectstore.CheckpointKey(orgID, size)
	if err != nil {
		return err
	}
	if _, err := c.objects.Put(ctx, objectstore.PutParams{Key: key + ".tsr", Body: token, ContentType: "application/timestamp-reply"}); err != nil {
		return fmt.Errorf("storing checkpoint %d's timestamp: %w", size, err)
	}
	if _, err := c.objects.Put(ctx, objectstore.PutParams{Key: key, Body: note, ContentType: "text/plain; charset=utf-8"}); err != nil {
		return fmt.Errorf("storing checkpoint %d: %w", size, err)
	}
	return nil
}
