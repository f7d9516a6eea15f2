// Package custody keeps the chain of custody of a lockout's evidence: a
// node for each evidence event (the lockout, each usage capture, each
// provider confirmation, each device acknowledgement, the snapshot, its
// upload), each node time-stamped by an RFC 3161 TSA, and all of an org's
// nodes in a Merkle log whose signed, time-stamped checkpoints are written
// to write-once storage. Anyone holding a node, its token and the TSA root
// can check it offline (Verify, `toktractl custody verify`, or openssl);
// anyone who kept a checkpoint can demand proof that the log only grew.
//
// # Node hash
//
// A node's hash is SHA-256 over this encoding, where field(v) is v's
// length as a 4-byte big-endian unsigned integer followed by v's bytes, and
// strings are their UTF-8 bytes:
//
//	field("toktra.custody.node.v1")
//	field(org_id)
//	field(lockout_id)
//	field(kind)
//	field(subject)          "" when the event has no subject
//	field(n)                n = number of parents, 4 bytes big-endian
//	field(parent_1) ... field(parent_n)   each a 32-byte node hash, in the recorded order
//	field(payload_hash)     32 bytes: SHA-256 of the payload bytes
//	field(at)               8 bytes: big-endian two's-complement Unix time in microseconds, UTC
//
// The length prefixes make the encoding injective. The node's log index is
// not hashed: the Merkle log fixes the order. In Python:
//
//	def f(b): return len(b).to_bytes(4, "big") + b
//	enc = f(b"toktra.custody.node.v1") + f(org) + f(lockout) + f(kind) + f(subject)
//	enc += f(len(parents).to_bytes(4, "big")) + b"".join(f(p) for p in parents)
//	enc += f(payload_hash) + f(at_micros.to_bytes(8, "big", signed=True))
//	node_hash = hashlib.sha256(enc).digest()
//
// # Time-stamps
//
// A node's RFC 3161 token has the node hash itself as its SHA-256 message
// imprint, so
//
//	openssl ts -verify -digest <node hash, hex> -in node.tst -token_in -CAfile tsa-root.pem
//
// checks it. Nodes are recorded inside the caller's transaction without
// waiting for a TSA (a public TSA can take seconds, and throttles); Stamp
// and StampPending time-stamp them right after commit, and a node's token
// is kept in an append-only table, so once set it never changes.
//
// # Merkle log and checkpoints
//
// Each org's nodes, in index order, are the leaves of an RFC 6962 Merkle
// tree (the leaf data is the 32-byte node hash: leaf hash =
// SHA-256(0x00 || node hash)). A checkpoint is a C2SP tlog-checkpoint signed
// note: origin "<Config.Origin>/<org id>", size, base64 root hash, then an
// Ed25519 signature by the checkpoint key. The note's bytes are themselves
// time-stamped (imprint SHA-256 of the note) and handed to a CheckpointSink,
// the write-once bucket: an anchor outside the database.
package custody
