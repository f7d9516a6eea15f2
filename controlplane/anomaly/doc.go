// Package anomaly finds what was unusual in a user's LLM use in the days
// before their departure, with the numbers behind each finding.
//
// [Detect] compares a window (default the 14 local days ending at the
// lockout) with the user's own baseline before it (default 90 days), and —
// when the user has too little history — with the org's peers
// ([PeerAccumulator]). Days and hours are the user's local ones: their
// directory timezone when known, else an offset learned from when they are
// active. Statistics are robust: medians and scaled MADs, on a log scale
// for heavy-tailed quantities (daily tokens, bytes per request), with floors
// for the MAD-is-zero case and explicit notes when a check had too little
// data to run.
//
// Findings, and how their severity is graded:
//
//   - token_spike: a window day whose tokens are at least SpikeZ scaled MADs
//     above the baseline median on the log scale, SpikeRatio times the
//     median, MinSpikeTokens, and above every baseline day. High at z ≥ 7 or
//     20×, medium at z ≥ 5 or 10×.
//   - new_model, new_provider: used in the window (at least MinNoveltyEvents
//     requests) but never in the baseline, and neither common among peers
//     nor part of an org-wide rollout. A model of a provider that is itself
//     new is reported with the provider. Severity by its share of the
//     window's tokens (provider: high ≥ 10%, medium ≥ 1% or 20 requests;
//     model: high ≥ 25%, medium ≥ 5%).
//   - off_hours: requests in hours of the day that held almost none of the
//     user's baseline activity (learned per user, weekdays and weekends
//     apart; a generic night without history), above a Poisson-style bound
//     on their usual strays. High on ≥ 4 days or ≥ 100 requests, medium on
//     ≥ 2 days or ≥ 30.
//   - large_upload: a request that sent at least MinUploadBytes, UploadZ
//     scaled MADs above the user's (or peers') bytes per request, and more
//     than anything they sent in the baseline. High at ≥ 100 MiB (or 500 MiB
//     in total), medium at ≥ 32 MiB (or 100 MiB).
//
// What it cannot see: traffic that does not reach a Toktra-visible path
// (personal devices, an LLM behind an unlisted domain or a proxy), content
// (only volumes, models, times and sizes), and intent — a finding says a
// behaviour was unusual for this user, not that it was wrong. Provider usage
// is hourly, so provider-only activity has hour resolution. A user whose
// unusual behaviour started before the baseline has it as their normal.
//
// Detect is deterministic: it never reads the clock and its report depends
// only on its inputs, not on the order of the events.
package anomaly
