package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/tsa"
)

const custodyUsage = `usage: toktractl custody verify --node NODE.json --tsa-root ROOT.pem [flags]

Checks a chain-of-custody node offline, without the server: its payload
hashes to payload_hash, its fields hash to its hash, and its RFC 3161 token
is a time-stamp over that hash by a TSA chaining to ROOT.pem. With
--checkpoint, --verifier-key and --inclusion, also checks the checkpoint's
signature and that the node is in the checkpointed log.

  --node PATH           the node JSON (GET /v1/custody/nodes/{hash})
  --token PATH          the DER token; default the node's own "token"
  --tsa-root PATH       PEM of the TSA root(s) to trust
  --write-token PATH    also write the DER token there, for openssl
  --checkpoint PATH     a signed checkpoint note you kept ("note" of GET /v1/custody/checkpoint)
  --verifier-key KEY    the log's published verifier key
  --origin ORIGIN       the log's origin; default the checkpoint's, which must end in /<org id>
  --inclusion PATH      an inclusion proof (GET /v1/custody/proofs/inclusion?hash=...&size=...)
`

// runCustody handles "custody ..." commands, which need no server.
func runCustody(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, custodyUsage)
		return errors.New("custody: the only action is verify")
	}
	fs := flag.NewFlagSet("custody verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, custodyUsage) }
	nodePath := fs.String("node", "", "")
	tokenPath := fs.String("token", "", "")
	rootPath := fs.String("tsa-root", "", "")
	writeToken := fs.String("write-token", "", "")
	cpPath := fs.String("checkpoint", "", "")
	vkey := fs.String("verifier-key", "", "")
	origin := fs.String("origin", "", "")
	inclPath := fs.String("inclusion", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *nodePath == "" || *rootPath == "" {
		fmt.Fprint(stderr, custodyUsage)
		return errors.New("--node and --tsa-root are required")
	}
	var node custody.Node
	if err := readJSONFile(*nodePath, &node); err != nil {
		return err
	}
	rootPEM, err := readSmallFile(*rootPath)
	if err != nil {
		return err
	}
	roots, err := tsa.ParseRootsPEM(rootPEM)
	if err != nil {
		return fmt.Errorf("--tsa-root %s: %w", *rootPath, err)
	}
	token := node.Token
	if *tokenPath != "" {
		if token, err = readSmallFile(*tokenPath); err != nil {
			return err
		}
	}
	tok, err := custody.VerifyNode(node, token, roots)
	if err != nil {
		return fmt.Errorf("NOT VERIFIED: %w", err)
	}
	fmt.Fprintf(stdout, "node %s\n  %s %q of lockout %s in org %s, log index %d, recorded %s\n",
		node.Hash, node.Kind, node.Subject, node.LockoutID, node.OrgID, node.Index, node.At.UTC().Format("2006-01-02T15:04:05.000000Z"))
	fmt.Fprintf(stdout, "  hash: OK (payload %d bytes, %d parents)\n", len(node.Payload), len(node.Parents))
	fmt.Fprintf(stdout, "  time-stamp: OK, %s by %s (serial %s)\n", tok.Time.Format("2006-01-02T15:04:05Z"), tok.TSAName(), tok.Serial)

	tokFile := *tokenPath
	if *writeToken != "" {
		if err := os.WriteFile(*writeToken, token, 0o644); err != nil {
			return err
		}
		tokFile = *writeToken
	}
	if tokFile == "" {
		tokFile = "node.tst"
		fmt.Fprintf(stdout, "\nto check the time-stamp independently, save the token (--write-token %s) and run:\n", tokFile)
	} else {
		fmt.Fprint(stdout, "\nto check the time-stamp independently:\n")
	}
	fmt.Fprintf(stdout, "  openssl ts -verify -digest %s -in %s -token_in -CAfile %s\n", node.Hash, tokFile, *rootPath)

	if *cpPath == "" && *inclPath == "" {
		return nil
	}
	if *cpPath == "" || *vkey == "" || *inclPath == "" {
		return errors.New("--checkpoint, --verifier-key and --inclusion go together")
	}
	note, err := readSmallFile(*cpPath)
	if err != nil {
		return err
	}
	if *origin == "" {
		first, _, _ := strings.Cut(string(note), "\n")
		if !strings.HasSuffix(first, "/"+node.OrgID) {
			return fmt.Errorf("NOT VERIFIED: the checkpoint's origin %q is not a log of org %s", first, node.OrgID)
		}
		*origin = first
	}
	cp, err := custody.VerifyCheckpoint(note, *origin, *vkey)
	if err != nil {
		return fmt.Errorf("NOT VERIFIED: %w", err)
	}
	var incl struct {
		NodeHash string   `json:"node_hash"`
		Index    uint64   `json:"index"`
		Size     uint64   `json:"size"`
		Proof    []string `json:"proof"`
	}
	if err := readJSONFile(*inclPath, &incl); err != nil {
		return err
	}
	if incl.Size != cp.Size {
		return fmt.Errorf("the inclusion proof is for tree size %d; the checkpoint's is %d (ask for size=%d)", incl.Size, cp.Size, cp.Size)
	}
	proof := make([][]byte, len(incl.Proof))
	for i, h := range incl.Proof {
		if proof[i], err = hex.DecodeString(h); err != nil {
			return fmt.Errorf("--inclusion: proof hash %d: %w", i, err)
		}
	}
	hash, _ := node.HashBytes()
	if err := custody.VerifyInclusion(hash, incl.Index, cp.Size, proof, cp.Hash); err != nil {
		return fmt.Errorf("NOT VERIFIED: node is not at index %d of the checkpointed log: %w", incl.Index, err)
	}
	fmt.Fprintf(stdout, "\ncheckpoint %s size %d: signature OK; node included at index %d: OK\n", cp.Origin, cp.Size, incl.Index)
	return nil
}

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4<<20+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 4<<20 {
		return nil, fmt.Errorf("%s is larger than 4 MiB", path)
	}
	return b, nil
}

func readJSONFile(path string, v any) error {
	b, err := readSmallFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
