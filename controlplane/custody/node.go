package custody

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// Evidence kinds.
const (
	KindLockout              = "lockout"
	KindUsageCapture         = "usage_capture"
	KindProviderConfirmation = "provider_confirmation"
	KindDeviceAck            = "device_ack"
	KindSnapshot             = "snapshot"
	KindUpload               = "upload"
)

const nodeHashDomain = "toktra.custody.node.v1"

// Node is one evidence event, as published: what the API returns and what
// `toktractl custody verify` reads. Hashes are lowercase hex; Payload and
// Token are base64 in JSON.
type Node struct {
	OrgID       string    `json:"org_id"`
	Index       uint64    `json:"index"`
	Hash        string    `json:"hash"`
	LockoutID   string    `json:"lockout_id"`
	Kind        string    `json:"kind"`
	Subject     string    `json:"subject"`
	Parents     []string  `json:"parents"`
	PayloadHash string    `json:"payload_hash"`
	Payload     []byte    `json:"payload"`
	At          time.Time `json:"at"`
	// Token is the node's RFC 3161 token (DER), absent until stamped.
	Token []byte `json:"token,omitempty"`
	// TokenTime and TSA repeat what the token says, for reading.
	TokenTime *time.Time `json:"token_time,omitempty"`
	TSA       string     `json:"tsa,omitempty"`
}

// NodeFromStore converts a stored node.
func NodeFromStore(n store.CustodyNode) Node {
	out := Node{
		OrgID: n.OrgID, Index: n.Index, Hash: hex.EncodeToString(n.Hash), LockoutID: n.LockoutID,
		Kind: n.Kind, Subject: n.Subject, Parents: make([]string, 0, len(n.Parents)),
		PayloadHash: hex.EncodeToString(n.PayloadHash), Payload: n.Payload, At: n.At,
	}
	for _, p := range n.Parents {
		out.Parents = append(out.Parents, hex.EncodeToString(p))
	}
	if n.Token != nil {
		t := n.Token.GenTime
		out.Token, out.TokenTime, out.TSA = n.Token.Token, &t, n.Token.TSA
	}
	return out
}

// HashBytes decodes the node's hash.
func (n Node) HashBytes() ([]byte, error) { return decodeHash("hash", n.Hash) }

// ComputeHash recomputes the node hash from the node's fields (not from its
// Hash), refusing malformed hex.
func (n Node) ComputeHash() ([]byte, error) {
	ph, err := decodeHash("payload_hash", n.PayloadHash)
	if err != nil {
		return nil, err
	}
	parents := make([][]byte, len(n.Parents))
	for i, p := range n.Parents {
		if parents[i], err = decodeHash(fmt.Sprintf("parent %d", i), p); err != nil {
			return nil, err
		}
	}
	return NodeHash(n.OrgID, n.LockoutID, n.Kind, n.Subject, parents, ph, n.At), nil
}

func decodeHash(what, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%s %q is not 64 hex digits", what, s)
	}
	return b, nil
}

// NodeHash computes a node hash by the encoding in the package
// documentation. at is taken in UTC microseconds.
func NodeHash(orgID, lockoutID, kind, subject string, parents [][]byte, payloadHash []byte, at time.Time) []byte {
	var b bytes.Buffer
	field := func(v []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(v)))
		b.Write(n[:])
		b.Write(v)
	}
	field([]byte(nodeHashDomain))
	field([]byte(orgID))
	field([]byte(lockoutID))
	field([]byte(kind))
	field([]byte(subject))
	field(binary.BigEndian.AppendUint32(nil, uint32(len(parents))))
	for _, p := range parents {
		field(p)
	}
	field(payloadHash)
	field(binary.BigEndian.AppendUint64(nil, uint64(at.UnixMicro())))
	h := sha256.Sum256(b.Bytes())
	return h[:]
}

// PayloadHash is the SHA-256 of a payload.
func PayloadHash(payload []byte) []byte {
	h := sha256.Sum256(payload)
	return h[:]
}
