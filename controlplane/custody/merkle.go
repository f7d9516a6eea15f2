package custody

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// hasher is RFC 6962's SHA-256 Merkle tree hashing.
var hasher = rfc6962.DefaultHasher

// tree is an org's log at some size, held as its leaf hashes. Proofs are
// computed from the leaves (O(size) hashing), which is small next to
// reading them: a log of 100k nodes is 3.2 MB of hashes.
type tree struct {
	leaves [][]byte // RFC 6962 leaf hashes, in index order
}

func newTree(nodeHashes [][]byte) *tree {
	t := &tree{leaves: make([][]byte, len(nodeHashes))}
	for i, h := range nodeHashes {
		t.leaves[i] = hasher.HashLeaf(h)
	}
	return t
}

func (t *tree) size() uint64 { return uint64(len(t.leaves)) }

// root is the RFC 6962 root hash of the first size leaves.
func (t *tree) root(size uint64) ([]byte, error) {
	if size > t.size() {
		return nil, fmt.Errorf("tree size %d is beyond the log's %d", size, t.size())
	}
	if size == 0 {
		return hasher.EmptyRoot(), nil
	}
	rf := compact.RangeFactory{Hash: hasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, l := range t.leaves[:size] {
		if err := r.Append(l, nil); err != nil {
			return nil, err
		}
	}
	return r.GetRootHash(nil)
}

// subtree is the hash of the perfect subtree id.
func (t *tree) subtree(id compact.NodeID) []byte {
	if id.Level == 0 {
		return t.leaves[id.Index]
	}
	l := t.subtree(compact.NodeID{Level: id.Level - 1, Index: id.Index * 2})
	r := t.subtree(compact.NodeID{Level: id.Level - 1, Index: id.Index*2 + 1})
	return hasher.HashChildren(l, r)
}

func (t *tree) materialize(n proof.Nodes) ([][]byte, error) {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		if end := (id.Index + 1) << id.Level; end > t.size() {
			return nil, fmt.Errorf("proof node %+v lies beyond the log", id)
		}
		hs[i] = t.subtree(id)
	}
	return n.Rehash(hs, hasher.HashChildren)
}

// inclusion is the proof that leaf index is in the tree of size.
func (t *tree) inclusion(index, size uint64) ([][]byte, error) {
	if size > t.size() {
		return nil, fmt.Errorf("tree size %d is beyond the log's %d", size, t.size())
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return t.materialize(n)
}

// consistency is the proof that the tree of size1 is a prefix of size2's.
func (t *tree) consistency(size1, size2 uint64) ([][]byte, error) {
	if size2 > t.size() {
		return nil, fmt.Errorf("tree size %d is beyond the log's %d", size2, t.size())
	}
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return t.materialize(n)
}

// VerifyInclusion checks that the node with nodeHash is leaf index of the
// log whose tree of size has root.
func VerifyInclusion(nodeHash []byte, index, size uint64, inclusionProof [][]byte, root []byte) error {
	return proof.VerifyInclusion(hasher, index, size, hasher.HashLeaf(nodeHash), inclusionProof, root)
}

// VerifyConsistency checks that the log's tree of size1 (root1) is a prefix
// of its tree of size2 (root2): nothing recorded by size1 was changed.
func VerifyConsistency(size1, size2 uint64, consistencyProof [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(hasher, size1, size2, consistencyProof, root1, root2)
}
