// Package tsa obtains and checks RFC 3161 time-stamp tokens: a client for
// remote time-stamping authorities (DigiCert's public TSA by default, with a
// fallback and a bounded, jittered retry budget), a local TSA served as an
// http.Handler for the embedded default and tests, and Verify, the offline
// check a third party can repeat.
//
// # What a token proves
//
// A token is the CMS SignedData (RFC 5652) a TSA returns inside its
// TimeStampResp: it signs a TSTInfo holding the SHA-256 message imprint it was
// asked to time-stamp, the generation time, a serial number, the TSA's policy
// and (when the request had one) the requester's nonce. Toktra stores the
// token, not the whole response, so
//
//	openssl ts -verify -digest <64 hex digits> -in token.der -token_in -CAfile tsa-root.pem
//
// (or -data FILE instead of -digest) checks one independently of this code.
//
// # Checks
//
// github.com/digitorus/timestamp parses tokens but checks almost nothing on
// its own (it verifies the signature only against whatever certificate the
// token carries). Verify adds, and Client.Timestamp relies on:
//   - the response status is granted (or granted with modifications);
//   - the response is no larger than a configured bound;
//   - the token is SignedData over an id-ct-TSTInfo with exactly one signer;
//   - the signature verifies and the signer's chain leads to one of the
//     configured roots, evaluated at the token's generation time, with the
//     timeStamping extended key usage required along the chain;
//   - the signer certificate's extended key usage is timeStamping alone, in an
//     extension marked critical (RFC 3161 section 2.3);
//   - the ESS signing-certificate attribute (v1 or v2) names the signer;
//   - the message imprint is SHA-256 and equals the digest asked for;
//   - for a fresh request, the nonce equals the one sent.
package tsa
