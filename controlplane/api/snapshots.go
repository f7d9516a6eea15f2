package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// snapshotView describes a lockout's audit snapshot. The PDF itself is
// fetched from the write-once store through download_url.
type snapshotView struct {
	ID        string    `json:"id"`
	LockoutID string    `json:"lockout_id"`
	SHA256    string    `json:"sha256"`
	Bytes     int       `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
	// TimestampToken is the RFC 3161 token over SHA256 (DER, base64):
	// `openssl ts -verify -digest <sha256> -in <token> -token_in -CAfile <TSA root>`.
	TimestampToken string     `json:"timestamp_token"`
	ObjectKey      string     `json:"object_key,omitempty"`
	VersionID      string     `json:"version_id,omitempty"`
	RetainUntil    *time.Time `json:"retain_until,omitempty"`
	UploadedAt     *time.Time `json:"uploaded_at,omitempty"`
	// DownloadURL fetches exactly the stored version for an hour.
	DownloadURL string `json:"download_url,omitempty"`
}

func init() {
	doc := routeDoc{
		Summary:  "A lockout's audit snapshot: its hash, RFC 3161 token, write-once location and an hour-long download URL",
		Response: snapshotView{}, Status: 200,
	}
	routeDocs["GET /v1/snapshots/{id}"] = doc
	routeDocs["GET /v1/hris/offboarding/{snapshot_id}"] = doc
	routeDocs["GET /v1/lockouts/{id}/snapshot"] = routeDoc{
		Summary: "The lockout's audit snapshot (404 until it is made)", Response: snapshotView{}, Status: 200,
	}
}

func (s *Server) snapshotRoutes() {
	s.handle("GET /v1/snapshots/{id}", store.ScopeReadOnly, func(ctx context.Context, p principal, r *http.Request) (int, any, error) {
		snap, err := s.store.GetSnapshot(ctx, p.key.OrgID, r.PathValue("id"))
		return s.snapshotResponse(ctx, r, snap, err)
	})
	// The product documentation's name for the same thing.
	s.handle("GET /v1/hris/offboarding/{snapshot_id}", store.ScopeReadOnly, func(ctx context.Context, p principal, r *http.Request) (int, any, error) {
		snap, err := s.store.GetSnapshot(ctx, p.key.OrgID, r.PathValue("snapshot_id"))
		return s.snapshotResponse(ctx, r, snap, err)
	})
	s.handle("GET /v1/lockouts/{id}/snapshot", store.ScopeReadOnly, func(ctx context.Context, p principal, r *http.Request) (int, any, error) {
		snap, err := s.store.GetLockoutSnapshot(ctx, p.key.OrgID, r.PathValue("id"))
		return s.snapshotResponse(ctx, r, snap, err)
	})
}

func (s *Server) snapshotResponse(ctx context.Context, r *http.Request, snap store.Snapshot, err error) (int, any, error) {
	if err != nil {
		return 0, nil, err
	}
	v := snapshotView{
		ID: snap.ID, LockoutID: snap.LockoutID, SHA256: hex.EncodeToString(snap.SHA256), Bytes: len(snap.PDF),
		CreatedAt: snap.CreatedAt.UTC(), TimestampToken: base64.StdEncoding.EncodeToString(snap.TimestampToken),
		ObjectKey: snap.ObjectKey, VersionID: snap.VersionID, RetainUntil: timePtr(snap.RetainUntil), UploadedAt: timePtr(snap.UploadedAt),
	}
	if snap.UploadedAt != nil && s.objects != nil {
		u, err := s.objects.PresignGet(ctx, snap.ObjectKey, snap.VersionID, time.Hour)
		if err != nil {
			return 0, nil, err
		}
		if strings.HasPrefix(u, "/") {
			// The local store's links are served by this API.
			u = "https://" + r.Host + u
		}
		v.DownloadURL = u
	}
	return http.StatusOK, v, nil
}
