package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

var auditTests = []struct {
	name string
	run  func(t *testing.T, f *fixture)
}{
	{"AuditAppendList", testAuditAppendList},
	{"AuditInvalid", testAuditInvalid},
	{"AuditFilters", testAuditFilters},
	{"AuditPaging", testAuditPaging},
	{"AuditPageLimits", testAuditPageLimits},
	{"AuditVerifyDetectsTampering", testAuditVerifyDetectsTampering},
	{"AuditConcurrentAppends", testAuditConcurrentAppends},
	{"AuditInTx", testAuditInTx},
}

// exerciseAudit runs the AuditLog tests, each in parallel with its own store.
func exerciseAudit(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tt := range auditTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, setup(t, newStore))
		})
	}
}

func auditParams(orgID string, i int) store.AppendAuditParams {
	return store.AppendAuditParams{
		OrgID:    orgID,
		At:       base.Add(time.Duration(i) * time.Minute),
		Actor:    fmt.Sprintf("api-key:key_%d", i%3),
		Action:   []string{"lockouts.create", "policy.update", "devices.read"}[i%3],
		Target:   store.AuditTarget{Type: "lockouts", ID: fmt.Sprintf("lck_%d", i%4)},
		Detail:   json.RawMessage(fmt.Sprintf(`{ "status": 200, "i": %d }`, i)),
		RemoteIP: "192.0.2.7",
	}
}

func (f *fixture) appendAudit(t *testing.T, p store.AppendAuditParams) store.AuditEntry {
	t.Helper()
	e, err := f.s.AppendAudit(f.ctx, p)
	if err != nil {
		t.Fatalf("AppendAudit(%s, %s) error = %v", p.OrgID, p.Action, err)
	}
	return e
}

// walkAudit lists every page and fails unless each page but the last is
// full and the walk ends.
func (f *fixture) walkAudit(t *testing.T, p store.ListAuditParams) []store.AuditEntry {
	t.Helper()
	var all []store.AuditEntry
	for range 10000 {
		page, err := f.s.ListAudit(f.ctx, p)
		noErr(t, "ListAudit", err)
		all = append(all, page.Entries...)
		if page.NextCursor == "" {
			return all
		}
		if p.Limit > 0 && len(page.Entries) != p.Limit {
			t.Fatalf("ListAudit(limit %d) page of %d entries has a next cursor; want full pages", p.Limit, len(page.Entries))
		}
		p.Cursor = page.NextCursor
	}
	t.Fatal("ListAudit: cursor walk did not end")
	return nil
}

func auditSeqs(es []store.AuditEntry) []uint64 {
	out := []uint64{}
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

// testAuditAppendList: entries come back as appended, numbered from 1,
// linked from a zero hash, and each org's chain is its own.
func testAuditAppendList(t *testing.T, f *fixture) {
	var wantA []store.AuditEntry
	for i := range 3 {
		wantA = append(wantA, f.appendAudit(t, auditParams(f.orgA.ID, i)))
	}
	b1 := f.appendAudit(t, auditParams(f.orgB.ID, 0))
	wantA = append(wantA, f.appendAudit(t, auditParams(f.orgA.ID, 3)))

	zero := make([]byte, store.AuditHashSize)
	for i, e := range wantA {
		p := auditParams(f.orgA.ID, i)
		if e.OrgID != f.orgA.ID || e.Seq != uint64(i+1) || !strings.HasPrefix(e.ID, "aud_") ||
			!e.At.Equal(utc(p.At)) || e.At.Location() != time.UTC || e.Actor != p.Actor || e.Action != p.Action ||
			e.Target != p.Target || e.RemoteIP != p.RemoteIP {
			t.Errorf("AppendAudit(%d) = %+v; want org A, seq %d, the params' fields, UTC microseconds", i, e, i+1)
		}
		if want := fmt.Sprintf(`{"status":200,"i":%d}`, i); string(e.Detail) != want {
			t.Errorf("AppendAudit(%d).Detail = %s; want %s (compacted)", i, e.Detail, want)
		}
		if !bytes.Equal(e.Hash, store.AuditHash(e)) {
			t.Errorf("AppendAudit(%d).Hash = %x; want AuditHash = %x", i, e.Hash, store.AuditHash(e))
		}
	}
	if !bytes.Equal(wantA[0].PrevHash, zero) {
		t.Errorf("first entry's PrevHash = %x; want 32 zero bytes", wantA[0].PrevHash)
	}
	if b1.Seq != 1 || !bytes.Equal(b1.PrevHash, zero) {
		t.Errorf("org B's first entry = seq %d, prev %x; want its own chain from 1 and zero", b1.Seq, b1.PrevHash)
	}

	page, err := f.s.ListAudit(f.ctx, store.ListAuditParams{OrgID: f.orgA.ID})
	noErr(t, "ListAudit(org A)", err)
	if d := diff(wantA, page.Entries); d != "" || page.NextCursor != "" {
		t.Errorf("ListAudit(org A) mismatch (-want +got):\n%s\nnext cursor %q; want none", d, page.NextCursor)
	}
	if err := store.VerifyAuditChain(page.Entries); err != nil {
		t.Errorf("VerifyAuditChain(org A) = %v; want nil", err)
	}
	page, err = f.s.ListAudit(f.ctx, store.ListAuditParams{OrgID: f.orgB.ID})
	noErr(t, "ListAudit(org B)", err)
	if d := diff([]store.AuditEntry{b1}, page.Entries); d != "" {
		t.Errorf("ListAudit(org B) mismatch (-want +got):\n%s", d)
	}

	// An empty detail is recorded as {}; an unknown org has no chain.
	e := f.appendAudit(t, store.AppendAuditParams{OrgID: f.orgB.ID, At: base, Actor: "system", Action: "lockouts.create"})
	if string(e.Detail) != "{}" || e.Seq != 2 || !bytes.Equal(e.PrevHash, b1.Hash) {
		t.Errorf("AppendAudit(no detail) = detail %s, seq %d; want {} and seq 2 after org B's first", e.Detail, e.Seq)
	}
	_, err = f.s.AppendAudit(f.ctx, store.AppendAuditParams{OrgID: "org_nope", At: base, Actor: "system", Action: "x"})
	wantErr(t, "AppendAudit(unknown org)", err, store.ErrNotFound)
	page, err = f.s.ListAudit(f.ctx, store.ListAuditParams{OrgID: "org_nope"})
	if err != nil || len(page.Entries) != 0 {
		t.Errorf("ListAudit(unknown org) = %d entries, %v; want none", len(page.Entries), err)
	}
}

// testAuditInvalid: entries the store will not record are refused and
// leave no gap in the chain.
func testAuditInvalid(t *testing.T, f *fixture) {
	ok := auditParams(f.orgA.ID, 0)
	long := strings.Repeat("x", store.MaxAuditFieldBytes+1)
	cases := []struct {
		name string
		edit func(p *store.AppendAuditParams)
	}{
		{"no actor", func(p *store.AppendAuditParams) { p.Actor = "" }},
		{"no action", func(p *store.AppendAuditParams) { p.Action = "" }},
		{"no time", func(p *store.AppendAuditParams) { p.At = time.Time{} }},
		{"long actor", func(p *store.AppendAuditParams) { p.Actor = long }},
		{"long target", func(p *store.AppendAuditParams) { p.Target.ID = long }},
		{"NUL in action", func(p *store.AppendAuditParams) { p.Action = "a\x00b" }},
		{"bad UTF-8 ip", func(p *store.AppendAuditParams) { p.RemoteIP = "\xff" }},
		{"detail not JSON", func(p *store.AppendAuditParams) { p.Detail = json.RawMessage(`{"a":`) }},
		{"detail an array", func(p *store.AppendAuditParams) { p.Detail = json.RawMessage(`[1]`) }},
		{"detail too large", func(p *store.AppendAuditParams) {
			p.Detail = json.RawMessage(`{"x":"` + strings.Repeat("y", store.MaxAuditDetailBytes) + `"}`)
		}},
	}
	for _, tc := range cases {
		p := ok
		tc.edit(&p)
		_, err := f.s.AppendAudit(f.ctx, p)
		wantErr(t, "AppendAudit("+tc.name+")", err, store.ErrInvalidAuditEntry)
	}
	if e := f.appendAudit(t, ok); e.Seq != 1 {
		t.Errorf("AppendAudit after refused entries: seq %d; want 1", e.Seq)
	}
}

// testAuditFilters: each filter matches exactly, and they combine.
func testAuditFilters(t *testing.T, f *fixture) {
	var all []store.AuditEntry
	for i := range 12 {
		all = append(all, f.appendAudit(t, auditParams(f.orgA.ID, i)))
	}
	f.appendAudit(t, auditParams(f.orgB.ID, 0))
	match := func(keep func(e store.AuditEntry) bool) []uint64 {
		out := []uint64{}
		for _, e := range all {
			if keep(e) {
				out = append(out, e.Seq)
			}
		}
		return out
	}
	from, to := utc(base.Add(3*time.Minute)), utc(base.Add(9*time.Minute))
	cases := []struct {
		name string
		p    store.ListAuditParams
		want []uint64
	}{
		{"actor", store.ListAuditParams{Actor: "api-key:key_1"}, match(func(e store.AuditEntry) bool { return e.Actor == "api-key:key_1" })},
		{"action", store.ListAuditParams{Action: "policy.update"}, match(func(e store.AuditEntry) bool { return e.Action == "policy.update" })},
		{"target type", store.ListAuditParams{TargetType: "lockouts"}, match(func(store.AuditEntry) bool { return true })},
		{"target", store.ListAuditParams{TargetType: "lockouts", TargetID: "lck_2"}, match(func(e store.AuditEntry) bool { return e.Target.ID == "lck_2" })},
		{"target id prefix is not a match", store.ListAuditParams{TargetID: "lck_"}, []uint64{}},
		{"from", store.ListAuditParams{From: from}, match(func(e store.AuditEntry) bool { return !e.At.Before(from) })},
		{"to", store.ListAuditParams{To: to}, match(func(e store.AuditEntry) bool { return e.At.Before(to) })},
		{"from and to", store.ListAuditParams{From: from, To: to}, match(func(e store.AuditEntry) bool { return !e.At.Before(from) && e.At.Before(to) })},
		{"combined", store.ListAuditParams{Action: "lockouts.create", TargetID: "lck_0", From: from}, match(func(e store.AuditEntry) bool {
			return e.Action == "lockouts.create" && e.Target.ID == "lck_0" && !e.At.Before(from)
		})},
		{"no match", store.ListAuditParams{Actor: "system"}, []uint64{}},
	}
	for _, tc := range cases {
		tc.p.OrgID = f.orgA.ID
		if got := auditSeqs(f.walkAudit(t, tc.p)); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ListAudit(%s) = seqs %v; want %v", tc.name, got, tc.want)
		}
		// Paged one at a time, the same entries.
		tc.p.Limit = 1
		if got := auditSeqs(f.walkAudit(t, tc.p)); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ListAudit(%s, limit 1) = seqs %v; want %v", tc.name, got, tc.want)
		}
	}
}

// testAuditPaging: walking the pages yields every entry exactly once, in
// chain order, and the concatenation verifies.
func testAuditPaging(t *testing.T, f *fixture) {
	const n = 23
	for i := range n {
		f.appendAudit(t, auditParams(f.orgA.ID, i))
		if i%5 == 0 {
			f.appendAudit(t, auditParams(f.orgB.ID, i))
		}
	}
	for _, limit := range []int{1, 5, 7, 22, 23, 24} {
		got := f.walkAudit(t, store.ListAuditParams{OrgID: f.orgA.ID, Limit: limit})
		seqs := auditSeqs(got)
		if len(seqs) != n {
			t.Errorf("ListAudit(limit %d) walk = %d entries; want %d", limit, len(seqs), n)
			continue
		}
		for i, s := range seqs {
			if s != uint64(i+1) {
				t.Errorf("ListAudit(limit %d) walk = seqs %v; want 1..%d once each, in order", limit, seqs, n)
				break
			}
		}
		if err := store.VerifyAuditChain(got); err != nil {
			t.Errorf("VerifyAuditChain(walk with limit %d) = %v; want nil", limit, err)
		}
	}
	// A page from the middle verifies on its own, anchored at its first entry.
	page, err := f.s.ListAudit(f.ctx, store.ListAuditParams{OrgID: f.orgA.ID, Limit: 5, Cursor: store.EncodeAuditCursor(10)})
	noErr(t, "ListAudit(after 10)", err)
	if got := auditSeqs(page.Entries); fmt.Sprint(got) != "[11 12 13 14 15]" {
		t.Errorf("ListAudit(after 10, limit 5) = seqs %v; want [11 12 13 14 15]", got)
	}
	if err := store.VerifyAuditChain(page.Entries); err != nil {
		t.Errorf("VerifyAuditChain(middle page) = %v; want nil", err)
	}
	for _, c := range []string{"!!", store.EncodeAuditCursor(0), "bm90LWEtbnVtYmVy" /* "not-a-number" */} {
		_, err := f.s.ListAudit(f.ctx, store.ListAuditParams{OrgID: f.orgA.ID, Cursor: c})
		wantErr(t, fmt.Sprintf("ListAudit(cursor %q)", c), err, store.ErrInvalidCursor)
	}
}

// testAuditPageLimits: the limit defaults to 100 and is clamped to 1000.
func testAuditPageLimits(t *testing.T, f *fixture) {
	const n = store.MaxAuditPageLimit + 1
	// One transaction keeps a thousand appends quick on every backend.
	err := f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		for i := range n {
			if _, err := st.AppendAudit(f.ctx, auditParams(f.orgA.ID, i)); err != nil {
				return err
			}
		}
		return nil
	})
	noErr(t, "appending entries", err)
	for _, tt := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {999, 999}, {1000, 1000}, {1001, 1000}, {100000, 1000}} {
		page, err := f.s.ListAudit(f.ctx, store.ListAuditParams{OrgID: f.orgA.ID, Limit: tt.limit})
		noErr(t, "ListAudit", err)
		if len(page.Entries) != tt.want || page.NextCursor == "" {
			t.Errorf("ListAudit(limit %d) = %d entries, cursor %q; want %d and a cursor", tt.limit, len(page.Entries), page.NextCursor, tt.want)
		}
	}
	all := f.walkAudit(t, store.ListAuditParams{OrgID: f.orgA.ID, Limit: 1000})
	if len(all) != n {
		t.Errorf("ListAudit(limit 1000) pages = %d entries; want %d", len(all), n)
	}
	if err := store.VerifyAuditChain(all); err != nil {
		t.Errorf("VerifyAuditChain(%d entries) = %v; want nil", n, err)
	}
}

// testAuditVerifyDetectsTampering: changing any field of any entry in
// memory, or dropping or swapping entries, makes verification fail.
func testAuditVerifyDetectsTampering(t *testing.T, f *fixture) {
	for i := range 4 {
		f.appendAudit(t, auditParams(f.orgA.ID, i))
	}
	page, err := f.s.ListAudit(f.ctx, store.ListAuditParams{OrgID: f.orgA.ID})
	noErr(t, "ListAudit", err)
	if err := store.VerifyAuditChain(page.Entries); err != nil {
		t.Fatalf("VerifyAuditChain(untouched) = %v; want nil", err)
	}
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-1] ^= 1; return b }
	tampers := []struct {
		name string
		edit func(e *store.AuditEntry)
	}{
		{"OrgID", func(e *store.AuditEntry) { e.OrgID = f.orgB.ID }},
		{"Seq", func(e *store.AuditEntry) { e.Seq += 10 }},
		{"ID", func(e *store.AuditEntry) { e.ID += "x" }},
		{"At", func(e *store.AuditEntry) { e.At = e.At.Add(time.Microsecond) }},
		{"Actor", func(e *store.AuditEntry) { e.Actor = "system" }},
		{"Action", func(e *store.AuditEntry) { e.Action += "x" }},
		{"Target.Type", func(e *store.AuditEntry) { e.Target.Type = "devices" }},
		{"Target.ID", func(e *store.AuditEntry) { e.Target.ID += "x" }},
		{"Detail", func(e *store.AuditEntry) { e.Detail = json.RawMessage(`{"status":500}`) }},
		{"RemoteIP", func(e *store.AuditEntry) { e.RemoteIP = "198.51.100.1" }},
		{"PrevHash", func(e *store.AuditEntry) { e.PrevHash = flip(e.PrevHash) }},
		{"Hash", func(e *store.AuditEntry) { e.Hash = flip(e.Hash) }},
		// Moving a field's bytes into its neighbour keeps the concatenation
		// but not the length-prefixed encoding.
		{"Actor/Action boundary", func(e *store.AuditEntry) { e.Actor, e.Action = e.Actor+e.Action[:1], e.Action[1:] }},
	}
	for i := range page.Entries {
		for _, tc := range tampers {
			es := cloneEntries(page.Entries)
			tc.edit(&es[i])
			if err := store.VerifyAuditChain(es); err == nil {
				t.Errorf("VerifyAuditChain(entry %d with %s changed) = nil; want an error", i+1, tc.name)
			}
		}
	}
	es := cloneEntries(page.Entries)
	if err := store.VerifyAuditChain(append(es[:1:1], es[2:]...)); err == nil {
		t.Errorf("VerifyAuditChain(entry 2 dropped) = nil; want an error")
	}
	es = cloneEntries(page.Entries)
	es[1], es[2] = es[2], es[1]
	if err := store.VerifyAuditChain(es); err == nil {
		t.Errorf("VerifyAuditChain(entries 2 and 3 swapped) = nil; want an error")
	}
	// Rehashing a changed entry breaks the link from the next one.
	es = cloneEntries(page.Entries)
	es[1].Actor = "system"
	es[1].Hash = store.AuditHash(es[1])
	if err := store.VerifyAuditChain(es); err == nil {
		t.Errorf("VerifyAuditChain(entry 2 changed and rehashed) = nil; want an error")
	}
}

func cloneEntries(es []store.AuditEntry) []store.AuditEntry {
	out := make([]store.AuditEntry, len(es))
	for i, e := range es {
		e.Detail = bytes.Clone(e.Detail)
		e.PrevHash = bytes.Clone(e.PrevHash)
		e.Hash = bytes.Clone(e.Hash)
		out[i] = e
	}
	return out
}

// testAuditConcurrentAppends: appends racing from 8 goroutines, in two
// orgs, leave each org one contiguous, unforked chain.
func testAuditConcurrentAppends(t *testing.T, f *fixture) {
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				org := f.orgA.ID
				if w%4 == 3 {
					org = f.orgB.ID
				}
				p := auditParams(org, w*each+i)
				p.Actor = fmt.Sprintf("worker:%d", w)
				if _, err := f.s.AppendAudit(f.ctx, p); err != nil {
					t.Errorf("AppendAudit(worker %d) error = %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, tt := range []struct {
		org  string
		want int
	}{{f.orgA.ID, 6 * each}, {f.orgB.ID, 2 * each}} {
		es := f.walkAudit(t, store.ListAuditParams{OrgID: tt.org, Limit: 7})
		if len(es) != tt.want {
			t.Errorf("ListAudit(%s) after concurrent appends = %d entries; want %d", tt.org, len(es), tt.want)
		}
		for i, e := range es {
			if e.Seq != uint64(i+1) {
				t.Fatalf("ListAudit(%s) = seqs %v; want 1..%d", tt.org, auditSeqs(es), tt.want)
			}
		}
		if err := store.VerifyAuditChain(es); err != nil {
			t.Errorf("VerifyAuditChain(%s after concurrent appends) = %v; want nil", tt.org, err)
		}
	}
}

// testAuditInTx: an append inside a transaction that rolls back is not
// kept and leaves no gap; one that commits is.
func testAuditInTx(t *testing.T, f *fixture) {
	first := f.appendAudit(t, auditParams(f.orgA.ID, 0))
	rollback := errors.New("roll back")
	err := f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		e, err := st.AppendAudit(f.ctx, auditParams(f.orgA.ID, 1))
		if err != nil {
			return err
		}
		page, err := st.ListAudit(f.ctx, store.ListAuditParams{OrgID: f.orgA.ID})
		if err != nil {
			return err
		}
		if len(page.Entries) != 2 || page.Entries[1].ID != e.ID {
			t.Errorf("ListAudit inside InTx = %d entries; want 2, ending with its own append", len(page.Entries))
		}
		return rollback
	})
	wantErr(t, "InTx(rolled back)", err, rollback)
	second := f.appendAudit(t, auditParams(f.orgA.ID, 2))
	if second.Seq != 2 || !bytes.Equal(second.PrevHash, first.Hash) {
		t.Errorf("AppendAudit after a rolled-back append = seq %d; want 2, linked to entry 1", second.Seq)
	}
	err = f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		_, err := st.AppendAudit(f.ctx, auditParams(f.orgA.ID, 3))
		return err
	})
	noErr(t, "InTx(commit)", err)
	es := f.walkAudit(t, store.ListAuditParams{OrgID: f.orgA.ID})
	if len(es) != 3 {
		t.Errorf("ListAudit after commit = %d entries; want 3", len(es))
	}
	if err := store.VerifyAuditChain(es); err != nil {
		t.Errorf("VerifyAuditChain = %v; want nil", err)
	}
}

// ExerciseAppendOnly checks the database itself refuses to change or remove
// audit entries. s must be a fresh store and exec must run a statement on the
// same database through a raw connection that bypasses the store (as a
// person with database access would), returning the database's error.
func ExerciseAppendOnly(t *testing.T, s store.Store, exec func(sql string) error) {
	t.Helper()
	f := &fixture{s: s, ctx: t.Context()}
	f.orgA = f.createOrg(t, "Org A")
	for i := range 3 {
		f.appendAudit(t, auditParams(f.orgA.ID, i))
	}
	before := f.walkAudit(t, store.ListAuditParams{OrgID: f.orgA.ID})
	// The raw connection reaches the table: a refusal below is the trigger's.
	if err := exec("SELECT count(*) FROM audit_log"); err != nil {
		t.Fatalf("exec(SELECT) error = %v; the raw connection must reach the audit table", err)
	}
	for _, stmt := range []string{
		"UPDATE audit_log SET actor = 'forged'",
		"UPDATE audit_log SET detail = '{}' WHERE seq = 2",
		"DELETE FROM audit_log WHERE seq = 3",
		"DELETE FROM audit_log",
	} {
		err := exec(stmt)
		if err == nil {
			t.Errorf("exec(%q) error = nil; want the database to refuse it", stmt)
		} else if !strings.Contains(err.Error(), "append-only") {
			t.Errorf("exec(%q) error = %v; want the append-only trigger's refusal", stmt, err)
		}
	}
	after := f.walkAudit(t, store.ListAuditParams{OrgID: f.orgA.ID})
	if d := diff(before, after); d != "" {
		t.Errorf("audit log changed by refused statements (-before +after):\n%s", d)
	}
	if err := store.VerifyAuditChain(after); err != nil {
		t.Errorf("VerifyAuditChain = %v; want nil", err)
	}
}
