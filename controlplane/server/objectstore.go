package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/toktra/toktra/controlplane/api"
	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/objectstore/localstore"
	"github.com/toktra/toktra/controlplane/objectstore/s3store"
)

// Evidence storage backends.
const (
	EvidenceLocal = "local"
	EvidenceS3    = "s3"
)

// EvidenceConfig says where snapshots, their timestamps and custody
// checkpoints are kept write-once.
type EvidenceConfig struct {
	// Store is EvidenceLocal (default: a write-once directory in the data
	// dir) or EvidenceS3 (a bucket with Object Lock).
	Store string
	// S3 bucket (default objectstore.DefaultBucket), region, endpoint
	// (MinIO-like servers) and path-style addressing.
	S3Bucket, S3Region, S3Endpoint string
	S3PathStyle                    bool
	// Retention is how long evidence is kept at least (zero: 7 years).
	Retention objectstore.Period
}

// openObjectStore builds the evidence store. For the local store it also
// returns the handler that serves its presigned URLs on the API server.
// It makes no network request: Run checks the store is write-once.
func openObjectStore(ctx context.Context, cfg Config) (objectstore.Store, http.Handler, error) {
	ev := cfg.Evidence
	switch ev.Store {
	case "", EvidenceLocal:
		st, err := localstore.Open(localstore.Config{
			Dir: filepath.Join(cfg.DataDir, "evidence"), Retention: ev.Retention, URLPrefix: api.EvidencePath,
			Clock: cfg.Clock, Logger: cfg.Logger.With("component", "evidence"),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("opening the local evidence store: %w", err)
		}
		return st, st.Handler(), nil
	case EvidenceS3:
		st, err := s3store.Open(ctx, s3store.Config{
			Bucket: ev.S3Bucket, Region: ev.S3Region, Endpoint: ev.S3Endpoint, PathStyle: ev.S3PathStyle,
			Retention: ev.Retention, Clock: cfg.Clock, Logger: cfg.Logger.With("component", "evidence"),
		})
		if err != nil {
			return nil, nil, err
		}
		return st, nil, nil
	}
	return nil, nil, fmt.Errorf("evidence store %q: want %s or %s", ev.Store, EvidenceLocal, EvidenceS3)
}

// Objects is the write-once evidence store the pipeline uploads to.
func (s *Server) Objects() objectstore.Store { return s.objects }

// checkEvidenceStore refuses to serve when evidence would not be kept
// write-once (e.g. an S3 bucket without Object Lock).
func (s *Server) checkEvidenceStore(ctx context.Context) error {
	if err := s.objects.CheckWriteOnce(ctx); err != nil {
		return fmt.Errorf("evidence storage: %w", err)
	}
	return nil
}
