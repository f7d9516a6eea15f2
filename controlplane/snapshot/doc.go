// Package snapshot renders and signs the audit snapshot of a lockout: the
// PDF a lawyer reads and a third party verifies with standard tools.
//
// # Contents
//
// [Render] lays out, from an [Input] the pipeline fills from the store: the
// person's identity (name, email, org, identity-provider ids), the lockout
// and every trigger with its evidence, the person's LLM use in the window
// before it (totals by UTC day and by provider and model, the largest
// events by tokens and by bytes sent), the anomaly report with each
// finding's evidence, each provider's revocation confirmation and each
// device's lock acknowledgement (or why one is missing), and the chain of
// custody up to the snapshot (node hashes, parents, RFC 3161 times, TSA
// identity). Tables paginate with their header repeated; every page
// carries the lockout id and "Page x of y".
//
// Nothing is truncated: the complete event list is attached as JSON Lines
// ([EventListName], written by [EncodeEventList], read back by
// [ParseEventList]) and the anomaly report as JSON ([AnomalyReportName]),
// with each attachment's SHA-256 printed in the document.
//
// Text is set in the embedded Go fonts (Latin, Greek, Cyrillic). Text in
// other scripts stays text, exact in pdftotext, search and copy, but its
// glyphs do not show, so names in such scripts are also printed as code
// points.
//
// # Determinism
//
// The same Input renders the same bytes: the creation date is
// Input.GeneratedAt, fpdf's catalogs are sorted, compression is fixed, and
// nothing depends on map order or the clock. The pipeline can therefore
// render again after a crash and get the document whose hash it may
// already have recorded.
//
// # Signature
//
// [Sign] adds an incremental update with a certification signature
// (adbe.pkcs7.detached, no changes allowed) by the control plane's
// evidence key (pki.LoadOrCreateEvidenceSigner) with an RFC 3161 timestamp
// over the signature value, so that poppler's pdfsig, or Acrobat once the
// org trusts the Toktra root, shows it valid and any changed byte as a
// digest mismatch. The PDF's own SHA-256 ([SHA256]) is timestamped
// separately by the pipeline.
package snapshot
