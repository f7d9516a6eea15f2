package storetest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// testSCIMTokens: one token per org, found by hash from any org, rotated in
// place (the old secret stops matching), touched, and deleted.
func testSCIMTokens(t *testing.T, f *fixture) {
	hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	if _, err := f.s.GetSCIMToken(f.ctx, f.orgA.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSCIMToken(no token) error = %v; want ErrNotFound", err)
	}
	first, err := f.s.PutSCIMToken(f.ctx, store.PutSCIMTokenParams{OrgID: f.orgA.ID, Hash: hash("one"), Hint: "...one", CreatedAt: base})
	if err != nil {
		t.Fatalf("PutSCIMToken error = %v", err)
	}
	if first.ID == "" || first.OrgID != f.orgA.ID || first.Hint != "...one" || !first.CreatedAt.Equal(base.Truncate(time.Microsecond)) || first.LastUsedAt != nil {
		t.Errorf("PutSCIMToken = %+v; want a new token of org A, never used", first)
	}
	if got, err := f.s.GetSCIMTokenByHash(f.ctx, hash("one")); err != nil || got.ID != first.ID || got.OrgID != f.orgA.ID {
		t.Errorf("GetSCIMTokenByHash = %+v, %v; want org A's token", got, err)
	}
	if _, err := f.s.GetSCIMToken(f.ctx, f.orgB.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSCIMToken(org B) error = %v; want ErrNotFound", err)
	}
	if err := f.s.TouchSCIMToken(f.ctx, f.orgA.ID, first.ID, base.Add(time.Minute)); err != nil {
		t.Fatalf("TouchSCIMToken error = %v", err)
	}
	if err := f.s.TouchSCIMToken(f.ctx, f.orgB.ID, first.ID, base.Add(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TouchSCIMToken(org B, A's token) error = %v; want ErrNotFound", err)
	}
	got, err := f.s.GetSCIMToken(f.ctx, f.orgA.ID)
	if err != nil || got.LastUsedAt == nil || !got.LastUsedAt.Equal(base.Add(time.Minute).Truncate(time.Microsecond)) {
		t.Errorf("GetSCIMToken after touch = %+v, %v; want last used a minute after base", got, err)
	}

	rotated, err := f.s.PutSCIMToken(f.ctx, store.PutSCIMTokenParams{OrgID: f.orgA.ID, Hash: hash("two"), Hint: "...two", CreatedAt: base.Add(time.Hour)})
	if err != nil || rotated.ID == first.ID || rotated.LastUsedAt != nil {
		t.Fatalf("PutSCIMToken(rotate) = %+v, %v; want a new id, never used", rotated, err)
	}
	if _, err := f.s.GetSCIMTokenByHash(f.ctx, hash("one")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSCIMTokenByHash(rotated-out secret) error = %v; want ErrNotFound", err)
	}
	if err := f.s.TouchSCIMToken(f.ctx, f.orgA.ID, first.ID, base.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TouchSCIMToken(rotated-out id) error = %v; want ErrNotFound", err)
	}
	// The same secret in another org is refused: hashes are unique.
	if _, err := f.s.PutSCIMToken(f.ctx, store.PutSCIMTokenParams{OrgID: f.orgB.ID, Hash: hash("two"), CreatedAt: base}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutSCIMToken(org B, A's hash) error = %v; want ErrConflict", err)
	}
	if err := f.s.DeleteSCIMToken(f.ctx, f.orgB.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSCIMToken(org B, none) error = %v; want ErrNotFound", err)
	}
	if err := f.s.DeleteSCIMToken(f.ctx, f.orgA.ID); err != nil {
		t.Fatalf("DeleteSCIMToken error = %v", err)
	}
	if _, err := f.s.GetSCIMTokenByHash(f.ctx, hash("two")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSCIMTokenByHash(deleted) error = %v; want ErrNotFound", err)
	}
}

func (f *fixture) scimUser(t *testing.T, orgID, userID, userName string, emails ...string) store.SCIMUser {
	t.Helper()
	u, err := f.s.CreateSCIMUser(f.ctx, store.CreateSCIMUserParams{
		OrgID: orgID, UserID: userID, UserName: userName, ExternalID: "ext-" + userName, Emails: emails, Active: true,
		Attributes: json.RawMessage(`{"userName":` + mustJSON(t, userName) + `}`), At: base,
	})
	if err != nil {
		t.Fatalf("CreateSCIMUser(%q) error = %v", userName, err)
	}
	return u
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testSCIMUsers: users are unique by userName per org (case-insensitively,
// Unicode too), found by filters, paged in a stable order, updated only from
// the version read, and deleted softly.
func testSCIMUsers(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "ann@a.example")
	ub := f.user(t, f.orgB.ID, "bo@b.example")
	ann := f.scimUser(t, f.orgA.ID, ua.ID, "Ann@A.example", "ann@a.example", "ann.private@mail.example")
	if ann.ID == "" || ann.UserID != ua.ID || ann.Version != 1 || !ann.Active || ann.DeactivatedAt != nil || ann.LockoutID != "" {
		t.Errorf("CreateSCIMUser = %+v; want version 1, active, linked to %s", ann, ua.ID)
	}
	if !slices.Equal(ann.Emails, []string{"ann@a.example", "ann.private@mail.example"}) {
		t.Errorf("Emails = %q; want both, in order", ann.Emails)
	}
	var attrs map[string]any
	if err := json.Unmarshal(ann.Attributes, &attrs); err != nil || attrs["userName"] != "Ann@A.example" {
		t.Errorf("Attributes = %s (%v); want the object back", ann.Attributes, err)
	}
	for _, tc := range []struct {
		name   string
		p      store.CreateSCIMUserParams
		target error
	}{
		{"userName taken, other case", store.CreateSCIMUserParams{OrgID: f.orgA.ID, UserID: ua.ID, UserName: "ANN@a.EXAMPLE", At: base}, store.ErrConflict},
		{"userID of another org", store.CreateSCIMUserParams{OrgID: f.orgA.ID, UserID: ub.ID, UserName: "x@a.example", At: base}, store.ErrNotFound},
	} {
		if _, err := f.s.CreateSCIMUser(f.ctx, tc.p); !errors.Is(err, tc.target) {
			t.Errorf("CreateSCIMUser(%s) error = %v; want %v", tc.name, err, tc.target)
		}
	}
	f.scimUser(t, f.orgA.ID, ua.ID, "Élodie")
	if _, err := f.s.CreateSCIMUser(f.ctx, store.CreateSCIMUserParams{OrgID: f.orgA.ID, UserID: ua.ID, UserName: "éLODIE", At: base}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSCIMUser(éLODIE after Élodie) error = %v; want ErrConflict (Unicode case folding)", err)
	}
	// The same userName in another org is another user.
	bo := f.scimUser(t, f.orgB.ID, ub.ID, "ann@a.example", "ann@a.example")

	if _, err := f.s.GetSCIMUser(f.ctx, f.orgB.ID, ann.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSCIMUser(org B, A's user) error = %v; want ErrNotFound", err)
	}
	for i := range 5 {
		f.scimUser(t, f.orgA.ID, ua.ID, "page"+string(rune('a'+i)))
	}
	list := func(p store.ListSCIMUsersParams) store.SCIMUserPage {
		t.Helper()
		page, err := f.s.ListSCIMUsers(f.ctx, p)
		if err != nil {
			t.Fatalf("ListSCIMUsers(%+v) error = %v", p, err)
		}
		return page
	}
	ids := func(us []store.SCIMUser) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.UserName)
		}
		return out
	}
	for _, tc := range []struct {
		p    store.ListSCIMUsersParams
		want []string
	}{
		{store.ListSCIMUsersParams{UserName: "ann@a.EXAMPLE"}, []string{"Ann@A.example"}},
		{store.ListSCIMUsersParams{ExternalID: "ext-Ann@A.example"}, []string{"Ann@A.example"}},
		{store.ListSCIMUsersParams{ExternalID: "EXT-ANN@A.EXAMPLE"}, nil},
		{store.ListSCIMUsersParams{Email: "ANN.PRIVATE@mail.example"}, []string{"Ann@A.example"}},
		{store.ListSCIMUsersParams{Email: "ann@a.example", UserName: "pagea"}, nil},
		{store.ListSCIMUsersParams{UserName: "nobody"}, nil},
	} {
		tc.p.OrgID = f.orgA.ID
		page := list(tc.p)
		if got := ids(page.Users); !slices.Equal(got, tc.want) || page.Total != len(tc.want) {
			t.Errorf("ListSCIMUsers(%+v) = %q (total %d); want %q", tc.p, got, page.Total, tc.want)
		}
	}
	all := list(store.ListSCIMUsersParams{OrgID: f.orgA.ID})
	if all.Total != 7 || len(all.Users) != 7 {
		t.Fatalf("ListSCIMUsers(org A) = %d of %d; want 7 of 7", len(all.Users), all.Total)
	}
	page := list(store.ListSCIMUsersParams{OrgID: f.orgA.ID, Offset: 2, Limit: 3})
	if !slices.Equal(ids(page.Users), ids(all.Users[2:5])) || page.Total != 7 {
		t.Errorf("ListSCIMUsers(offset 2, limit 3) = %q (total %d); want %q (total 7)", ids(page.Users), page.Total, ids(all.Users[2:5]))
	}
	if page := list(store.ListSCIMUsersParams{OrgID: f.orgA.ID, Offset: 50}); len(page.Users) != 0 || page.Total != 7 {
		t.Errorf("ListSCIMUsers(offset past the end) = %d users, total %d; want none, total 7", len(page.Users), page.Total)
	}
	if page := list(store.ListSCIMUsersParams{OrgID: f.orgB.ID}); page.Total != 1 || page.Users[0].ID != bo.ID {
		t.Errorf("ListSCIMUsers(org B) = %+v; want only B's user", page)
	}

	update := func(u store.SCIMUser, version int64, active bool, at time.Time) (store.SCIMUser, error) {
		return f.s.UpdateSCIMUser(f.ctx, store.UpdateSCIMUserParams{
			OrgID: u.OrgID, ID: u.ID, Version: version, UserName: u.UserName, ExternalID: "changed",
			Emails: []string{"new@a.example"}, Active: active, Attributes: json.RawMessage(`{"active":false}`), At: at,
		})
	}
	off, err := update(ann, 1, false, base.Add(time.Hour))
	if err != nil {
		t.Fatalf("UpdateSCIMUser(deactivate) error = %v", err)
	}
	if off.Version != 2 || off.Active || off.ExternalID != "changed" || off.DeactivatedAt == nil || !off.DeactivatedAt.Equal(base.Add(time.Hour).Truncate(time.Microsecond)) ||
		off.ReactivatedAt != nil || !slices.Equal(off.Emails, []string{"new@a.example"}) {
		t.Errorf("UpdateSCIMUser(deactivate) = %+v; want version 2, inactive since base+1h", off)
	}
	if _, err := update(ann, 1, false, base.Add(2*time.Hour)); !errors.Is(err, store.ErrStale) {
		t.Errorf("UpdateSCIMUser(from version 1 again) error = %v; want ErrStale", err)
	}
	if _, err := update(store.SCIMUser{OrgID: f.orgB.ID, ID: ann.ID, UserName: "x"}, 2, true, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSCIMUser(org B, A's user) error = %v; want ErrNotFound", err)
	}
	if _, err := f.s.UpdateSCIMUser(f.ctx, store.UpdateSCIMUserParams{OrgID: f.orgA.ID, ID: ann.ID, Version: 2, UserName: "PAGEA", At: base}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateSCIMUser(rename to a taken userName) error = %v; want ErrConflict", err)
	}
	// Staying inactive keeps when it happened.
	still, err := update(off, 2, false, base.Add(3*time.Hour))
	if err != nil || !still.DeactivatedAt.Equal(*off.DeactivatedAt) {
		t.Errorf("UpdateSCIMUser(inactive again) = %+v, %v; want DeactivatedAt kept", still, err)
	}

	l := f.lockout(t, f.orgA.ID, ua.ID)
	locked, err := f.s.SetSCIMUserLockout(f.ctx, store.SetSCIMUserLockoutParams{OrgID: f.orgA.ID, ID: ann.ID, LockoutID: l.ID, At: base.Add(4 * time.Hour)})
	if err != nil || locked.LockoutID != l.ID || locked.LockedAt == nil || locked.Version != still.Version {
		t.Errorf("SetSCIMUserLockout = %+v, %v; want lockout %s recorded, version unchanged", locked, err, l.ID)
	}
	for _, tc := range []store.SetSCIMUserLockoutParams{
		{OrgID: f.orgB.ID, ID: ann.ID, LockoutID: l.ID, At: base},
		{OrgID: f.orgA.ID, ID: ann.ID, LockoutID: "lck_nope", At: base},
	} {
		if _, err := f.s.SetSCIMUserLockout(f.ctx, tc); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SetSCIMUserLockout(%+v) error = %v; want ErrNotFound", tc, err)
		}
	}
	on, err := update(locked, locked.Version, true, base.Add(5*time.Hour))
	if err != nil || !on.Active || on.ReactivatedAt == nil || !on.ReactivatedAt.Equal(base.Add(5*time.Hour).Truncate(time.Microsecond)) ||
		on.LockoutID != l.ID || on.LockedAt == nil || !on.DeactivatedAt.Equal(*off.DeactivatedAt) {
		t.Errorf("UpdateSCIMUser(reactivate) = %+v, %v; want active, reactivated at base+5h, lockout kept", on, err)
	}
	// A new deactivation, even at the same instant, is not carried out yet.
	again, err := update(on, on.Version, false, base.Add(4*time.Hour))
	if err != nil || again.LockedAt != nil || again.LockoutID != l.ID || !again.DeactivatedAt.Equal(base.Add(4*time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("UpdateSCIMUser(deactivate again) = %+v, %v; want LockedAt cleared, the old lockout id kept", again, err)
	}
	on, err = update(again, again.Version, true, base.Add(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	inactive, err := f.s.CreateSCIMUser(f.ctx, store.CreateSCIMUserParams{OrgID: f.orgA.ID, UserID: ua.ID, UserName: "born-inactive", Active: false, At: base})
	if err != nil || inactive.Active || inactive.DeactivatedAt == nil || !inactive.DeactivatedAt.Equal(base.Truncate(time.Microsecond)) {
		t.Errorf("CreateSCIMUser(inactive) = %+v, %v; want DeactivatedAt at creation", inactive, err)
	}
	if string(inactive.Attributes) != "{}" && string(inactive.Attributes) != "{ }" {
		var m map[string]any
		if err := json.Unmarshal(inactive.Attributes, &m); err != nil || len(m) != 0 {
			t.Errorf("Attributes of a user created without = %s; want {}", inactive.Attributes)
		}
	}

	if err := f.s.DeleteSCIMUser(f.ctx, f.orgB.ID, ann.ID, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSCIMUser(org B, A's user) error = %v; want ErrNotFound", err)
	}
	if err := f.s.DeleteSCIMUser(f.ctx, f.orgA.ID, ann.ID, base.Add(6*time.Hour)); err != nil {
		t.Fatalf("DeleteSCIMUser error = %v", err)
	}
	if err := f.s.DeleteSCIMUser(f.ctx, f.orgA.ID, ann.ID, base.Add(7*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSCIMUser(again) error = %v; want ErrNotFound", err)
	}
	if _, err := f.s.GetSCIMUser(f.ctx, f.orgA.ID, ann.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSCIMUser(deleted) error = %v; want ErrNotFound", err)
	}
	if _, err := update(on, on.Version, true, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSCIMUser(deleted) error = %v; want ErrNotFound", err)
	}
	if page := list(store.ListSCIMUsersParams{OrgID: f.orgA.ID, UserName: "ann@a.example"}); page.Total != 0 {
		t.Errorf("ListSCIMUsers finds a deleted user: %+v", page)
	}
	page = list(store.ListSCIMUsersParams{OrgID: f.orgA.ID, UserName: "ann@a.example", IncludeDeleted: true})
	if page.Total != 1 || page.Users[0].DeletedAt == nil || page.Users[0].LockoutID != l.ID {
		t.Errorf("ListSCIMUsers(IncludeDeleted) = %+v; want the deleted user with its lockout", page)
	}
	// A deleted user's userName is free again.
	f.scimUser(t, f.orgA.ID, ua.ID, "ann@a.example")
}

// testSCIMGroups: groups are unique by displayName per org; members are
// live users of the same org, changed all or nothing, and leave with their
// user's deletion.
func testSCIMGroups(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "g@a.example")
	ub := f.user(t, f.orgB.ID, "g@b.example")
	u1 := f.scimUser(t, f.orgA.ID, ua.ID, "one")
	u2 := f.scimUser(t, f.orgA.ID, ua.ID, "two")
	u3 := f.scimUser(t, f.orgA.ID, ua.ID, "three")
	bu := f.scimUser(t, f.orgB.ID, ub.ID, "bee")
	members := func(g store.SCIMGroup) []string {
		t.Helper()
		ms, err := f.s.ListSCIMGroupMembers(f.ctx, g.OrgID, g.ID)
		if err != nil {
			t.Fatalf("ListSCIMGroupMembers error = %v", err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.UserName)
		}
		slices.Sort(out)
		return out
	}
	g, err := f.s.CreateSCIMGroup(f.ctx, store.CreateSCIMGroupParams{OrgID: f.orgA.ID, DisplayName: "Engineering", ExternalID: "e1",
		Attributes: json.RawMessage(`{"displayName":"Engineering"}`), Members: []string{u1.ID, u2.ID, u1.ID}, At: base})
	if err != nil {
		t.Fatalf("CreateSCIMGroup error = %v", err)
	}
	if g.Version != 1 || g.DisplayName != "Engineering" || g.ExternalID != "e1" {
		t.Errorf("CreateSCIMGroup = %+v; want version 1", g)
	}
	if got := members(g); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("members = %q; want one, two", got)
	}
	for _, tc := range []struct {
		name   string
		p      store.CreateSCIMGroupParams
		target error
	}{
		{"displayName taken", store.CreateSCIMGroupParams{OrgID: f.orgA.ID, DisplayName: "ENGINEERING", At: base}, store.ErrConflict},
		{"member of another org", store.CreateSCIMGroupParams{OrgID: f.orgA.ID, DisplayName: "X", Members: []string{u1.ID, bu.ID}, At: base}, store.ErrNotFound},
		{"unknown member", store.CreateSCIMGroupParams{OrgID: f.orgA.ID, DisplayName: "Y", Members: []string{"scu_nope"}, At: base}, store.ErrNotFound},
	} {
		if _, err := f.s.CreateSCIMGroup(f.ctx, tc.p); !errors.Is(err, tc.target) {
			t.Errorf("CreateSCIMGroup(%s) error = %v; want %v", tc.name, err, tc.target)
		}
	}
	if page, err := f.s.ListSCIMGroups(f.ctx, store.ListSCIMGroupsParams{OrgID: f.orgA.ID}); err != nil || page.Total != 1 {
		t.Errorf("ListSCIMGroups after refused creations = %+v, %v; want only Engineering (nothing half-made)", page, err)
	}
	if _, err := f.s.CreateSCIMGroup(f.ctx, store.CreateSCIMGroupParams{OrgID: f.orgB.ID, DisplayName: "Engineering", Members: []string{bu.ID}, At: base}); err != nil {
		t.Errorf("CreateSCIMGroup(org B, same name) error = %v; want nil", err)
	}
	if _, err := f.s.GetSCIMGroup(f.ctx, f.orgB.ID, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSCIMGroup(org B, A's group) error = %v; want ErrNotFound", err)
	}
	if ms, err := f.s.ListSCIMGroupMembers(f.ctx, f.orgB.ID, g.ID); err != nil || len(ms) != 0 {
		t.Errorf("ListSCIMGroupMembers(org B, A's group) = %+v, %v; want none", ms, err)
	}
	for _, tc := range []struct {
		p    store.ListSCIMGroupsParams
		want int
	}{
		{store.ListSCIMGroupsParams{DisplayName: "engineering"}, 1},
		{store.ListSCIMGroupsParams{ExternalID: "e1"}, 1},
		{store.ListSCIMGroupsParams{ExternalID: "E1"}, 0},
		{store.ListSCIMGroupsParams{DisplayName: "Sales"}, 0},
	} {
		tc.p.OrgID = f.orgA.ID
		page, err := f.s.ListSCIMGroups(f.ctx, tc.p)
		if err != nil || page.Total != tc.want || len(page.Groups) != tc.want {
			t.Errorf("ListSCIMGroups(%+v) = %+v, %v; want %d", tc.p, page, err, tc.want)
		}
	}

	upd := func(p store.UpdateSCIMGroupParams) (store.SCIMGroup, error) {
		p.OrgID, p.ID = f.orgA.ID, g.ID
		if p.DisplayName == "" {
			p.DisplayName = "Engineering"
		}
		p.At = base.Add(time.Hour)
		return f.s.UpdateSCIMGroup(f.ctx, p)
	}
	g2, err := upd(store.UpdateSCIMGroupParams{Version: 1, AddMembers: []string{u3.ID, u1.ID}, RemoveMembers: []string{u2.ID, "scu_absent"}})
	if err != nil || g2.Version != 2 {
		t.Fatalf("UpdateSCIMGroup(add, remove) = %+v, %v; want version 2", g2, err)
	}
	if got := members(g2); !slices.Equal(got, []string{"one", "three"}) {
		t.Errorf("members after add three, remove two = %q; want one, three", got)
	}
	if _, err := upd(store.UpdateSCIMGroupParams{Version: 1, AddMembers: []string{u2.ID}}); !errors.Is(err, store.ErrStale) {
		t.Errorf("UpdateSCIMGroup(from version 1 again) error = %v; want ErrStale", err)
	}
	if _, err := upd(store.UpdateSCIMGroupParams{Version: 2, DisplayName: "Renamed", RemoveMembers: []string{u1.ID}, AddMembers: []string{bu.ID}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSCIMGroup(add org B's user) error = %v; want ErrNotFound", err)
	}
	if got, err := f.s.GetSCIMGroup(f.ctx, f.orgA.ID, g.ID); err != nil || got.Version != 2 || got.DisplayName != "Engineering" || !slices.Equal(members(got), []string{"one", "three"}) {
		t.Errorf("group after a refused update = %+v, %v; want it unchanged (version 2, one, three)", got, err)
	}
	g3, err := upd(store.UpdateSCIMGroupParams{Version: 2, DisplayName: "Eng", ReplaceMembers: true, AddMembers: []string{u2.ID}})
	if err != nil || g3.DisplayName != "Eng" || !slices.Equal(members(g3), []string{"two"}) {
		t.Errorf("UpdateSCIMGroup(replace members) = %+v, %v, members %q; want Eng with two only", g3, err, members(g3))
	}
	if err := f.s.DeleteSCIMUser(f.ctx, f.orgA.ID, u2.ID, base); err != nil {
		t.Fatal(err)
	}
	if got := members(g3); len(got) != 0 {
		t.Errorf("members after their user was deleted = %q; want none", got)
	}
	if _, err := upd(store.UpdateSCIMGroupParams{Version: 3, AddMembers: []string{u2.ID}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSCIMGroup(add a deleted user) error = %v; want ErrNotFound", err)
	}
	if err := f.s.DeleteSCIMGroup(f.ctx, f.orgB.ID, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSCIMGroup(org B, A's group) error = %v; want ErrNotFound", err)
	}
	if _, err := upd(store.UpdateSCIMGroupParams{Version: 3, AddMembers: []string{u1.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteSCIMGroup(f.ctx, f.orgA.ID, g.ID); err != nil {
		t.Fatalf("DeleteSCIMGroup error = %v", err)
	}
	if _, err := f.s.GetSCIMGroup(f.ctx, f.orgA.ID, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSCIMGroup(deleted) error = %v; want ErrNotFound", err)
	}
	if _, err := upd(store.UpdateSCIMGroupParams{Version: 4}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSCIMGroup(deleted) error = %v; want ErrNotFound", err)
	}
	// Its members went with it; the user itself stays.
	if _, err := f.s.GetSCIMUser(f.ctx, f.orgA.ID, u1.ID); err != nil {
		t.Errorf("GetSCIMUser(member of a deleted group) error = %v; want nil", err)
	}
}
