package api

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/store"
)

// The chain-of-custody routes publish what a customer needs to hold the
// control plane to its evidence: the latest signed checkpoint of the org's
// log (keep it), the nodes with their RFC 3161 tokens, and proofs that a
// node is in the log and that the log at one size is a prefix of it at a
// later one. Hashes are lowercase hex; tokens are base64 DER.

func (s *Server) custodyRoutes() {
	s.handle("GET /v1/custody/checkpoint", store.ScopeReadOnly, s.getCustodyCheckpoint)
	s.handle("GET /v1/custody/nodes/{hash}", store.ScopeReadOnly, s.getCustodyNode)
	s.handle("GET /v1/custody/proofs/inclusion", store.ScopeReadOnly, s.getInclusionProof)
	s.handle("GET /v1/custody/proofs/consistency", store.ScopeReadOnly, s.getConsistencyProof)
}

type custodyCheckpointView struct {
	Origin   string `json:"origin"`
	Size     uint64 `json:"size"`
	RootHash string `json:"root_hash"`
	// Note is the C2SP signed note, verifiable with VerifierKey.
	Note string `json:"note"`
	// TimestampToken is an RFC 3161 token over SHA-256(note).
	TimestampToken []byte    `json:"timestamp_token"`
	VerifierKey    string    `json:"verifier_key"`
	CreatedAt      time.Time `json:"created_at"`
}

type inclusionProofView struct {
	NodeHash string   `json:"node_hash"`
	Index    uint64   `json:"index"`
	Size     uint64   `json:"size"`
	RootHash string   `json:"root_hash"`
	Proof    []string `json:"proof"`
}

type consistencyProofView struct {
	From     uint64   `json:"from"`
	To       uint64   `json:"to"`
	RootFrom string   `json:"root_from"`
	RootTo   string   `json:"root_to"`
	Proof    []string `json:"proof"`
}

func init() {
	routeDocs["GET /v1/custody/checkpoint"] = routeDoc{
		Summary:  "Get the latest signed, time-stamped checkpoint of the org's chain-of-custody log; keep it to check later proofs",
		Response: custodyCheckpointView{}, Status: 200,
	}
	routeDocs["GET /v1/custody/nodes/{hash}"] = routeDoc{
		Summary:  "Get a custody node (hex node hash) with its payload and RFC 3161 token",
		Response: custody.Node{}, Status: 200,
	}
	routeDocs["GET /v1/custody/proofs/inclusion"] = routeDoc{
		Summary:  "Prove a node is in the org's log at a tree size (RFC 6962)",
		Response: inclusionProofView{}, Status: 200,
		Query: map[string]string{
			"hash":  "the node's hash (hex); or give index",
			"index": "the node's log index",
			"size":  "tree size; default the latest checkpoint's",
		},
	}
	routeDocs["GET /v1/custody/proofs/consistency"] = routeDoc{
		Summary:  "Prove the org's log at one size is a prefix of it at a later size (RFC 6962)",
		Response: consistencyProofView{}, Status: 200,
		Query: map[string]string{
			"from": "the earlier tree size (a checkpoint you kept)",
			"to":   "the later tree size; default the latest checkpoint's",
		},
	}
}

var errCustodyOff = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "the chain of custody is not enabled on this server"}

func (s *Server) getCustodyCheckpoint(ctx context.Context, p principal, _ *http.Request) (int, any, error) {
	if s.custody == nil {
		return 0, nil, errCustodyOff
	}
	c, err := s.custody.LatestCheckpoint(ctx, p.key.OrgID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no checkpoint yet: the log has no evidence"}
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, custodyCheckpointView{
		Origin: s.custody.Origin(p.key.OrgID), Size: c.Size, RootHash: hex.EncodeToString(c.RootHash),
		Note: string(c.Note), TimestampToken: c.Token, VerifierKey: s.custody.VerifierKey(), CreatedAt: c.CreatedAt,
	}, nil
}

func (s *Server) getCustodyNode(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	if s.custody == nil {
		return 0, nil, errCustodyOff
	}
	hash, err := hex.DecodeString(r.PathValue("hash"))
	if err != nil || len(hash) != store.CustodyHashSize {
		return 0, nil, invalid("hash: 64 hex digits")
	}
	n, err := s.store.GetCustodyNode(ctx, p.key.OrgID, hash)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, custody.NodeFromStore(n), nil
}

// defaultSize is the latest checkpoint's size: the tree a customer can
// hold a signed root for.
func (s *Server) defaultSize(ctx context.Context, orgID, given string) (uint64, error) {
	if given != "" {
		return parseSize("size", given)
	}
	c, err := s.custody.LatestCheckpoint(ctx, orgID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no checkpoint yet; give a size"}
	}
	return c.Size, err
}

func parseSize(name, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 62)
	if err != nil {
		return 0, invalid(name + ": a non-negative integer")
	}
	return n, nil
}

func (s *Server) getInclusionProof(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	if s.custody == nil {
		return 0, nil, errCustodyOff
	}
	q := r.URL.Query()
	var n store.CustodyNode
	var err error
	switch h, i := q.Get("hash"), q.Get("index"); {
	case h != "" && i != "":
		return 0, nil, invalid("give hash or index, not both")
	case h != "":
		hash, derr := hex.DecodeString(h)
		if derr != nil || len(hash) != store.CustodyHashSize {
			return 0, nil, invalid("hash: 64 hex digits")
		}
		n, err = s.store.GetCustodyNode(ctx, p.key.OrgID, hash)
	case i != "":
		idx, perr := parseSize("index", i)
		if perr != nil {
			return 0, nil, perr
		}
		n, err = s.store.GetCustodyNodeAt(ctx, p.key.OrgID, idx)
	default:
		return 0, nil, invalid("hash or index is required")
	}
	if err != nil {
		return 0, nil, err
	}
	size, err := s.defaultSize(ctx, p.key.OrgID, q.Get("size"))
	if err != nil {
		return 0, nil, err
	}
	if n.Index >= size {
		return 0, nil, invalid("the node is not in the tree of that size (index " + strconv.FormatUint(n.Index, 10) + ")")
	}
	proof, err := s.custody.InclusionProof(ctx, p.key.OrgID, n.Index, size)
	if err != nil {
		return 0, nil, custodyError(err)
	}
	root, err := s.custody.RootAt(ctx, p.key.OrgID, size)
	if err != nil {
		return 0, nil, custodyError(err)
	}
	return http.StatusOK, inclusionProofView{
		NodeHash: hex.EncodeToString(n.Hash), Index: n.Index, Size: size, RootHash: hex.EncodeToString(root), Proof: hexAll(proof),
	}, nil
}

func (s *Server) getConsistencyProof(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	if s.custody == nil {
		return 0, nil, errCustodyOff
	}
	q := r.URL.Query()
	if q.Get("from") == "" {
		return 0, nil, invalid("from is required")
	}
	from, err := parseSize("from", q.Get("from"))
	if err != nil {
		return 0, nil, err
	}
	to, err := s.defaultSize(ctx, p.key.OrgID, q.Get("to"))
	if err != nil {
		return 0, nil, err
	}
	if from > to {
		return 0, nil, invalid("from must not be larger than to")
	}
	proof, err := s.custody.ConsistencyProof(ctx, p.key.OrgID, from, to)
	if err != nil {
		return 0, nil, custodyError(err)
	}
	rootFrom, err := s.custody.RootAt(ctx, p.key.OrgID, from)
	if err != nil {
		return 0, nil, custodyError(err)
	}
	rootTo, err := s.custody.RootAt(ctx, p.key.OrgID, to)
	if err != nil {
		return 0, nil, custodyError(err)
	}
	return http.StatusOK, consistencyProofView{
		From: from, To: to, RootFrom: hex.EncodeToString(rootFrom), RootTo: hex.EncodeToString(rootTo), Proof: hexAll(proof),
	}, nil
}

func custodyError(err error) error {
	if errors.Is(err, custody.ErrBeyondLog) {
		return invalid("tree size is larger than the log")
	}
	return err
}

func hexAll(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}
