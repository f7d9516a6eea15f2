package scim

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseFilter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`userName eq "bjensen"`, `userName eq "bjensen"`},
		{`  UserName   EQ "bjensen"  `, `UserName eq "bjensen"`},
		{`userName eq "a\"b\\c\u00e9"`, `userName eq "a\"b\\cé"`},
		{`name.familyName co "O'Malley"`, `name.familyName co "O'Malley"`},
		{`urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"`, `urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"`},
		{`title pr`, `title pr`},
		{`meta.lastModified gt "2011-05-13T04:42:34Z"`, `meta.lastModified gt "2011-05-13T04:42:34Z"`},
		{`a eq "1" and b eq "2" or c eq "3"`, `((a eq "1" and b eq "2") or c eq "3")`},
		{`a eq "1" or b eq "2" and c eq "3"`, `(a eq "1" or (b eq "2" and c eq "3"))`},
		{`not (a eq "1") and b eq true`, `(not (a eq "1") and b eq true)`},
		{`(a eq "1" or b eq null) and c ne 1.5e2`, `((a eq "1" or b eq null) and c ne 150)`},
		{`emails[type eq "work" and value co "@example.com"]`, `emails[(type eq "work" and value co "@example.com")]`},
		{`emails[type eq "work"].value eq "x@y.z"`, `emails[(type eq "work" and value eq "x@y.z")]`},
		{`members[value eq "2819c223"]`, `members[value eq "2819c223"]`},
		{`members.$ref pr`, `members.$ref pr`},
	} {
		e, err := ParseFilter(tc.in)
		if err != nil {
			t.Errorf("ParseFilter(%q) error = %v", tc.in, err)
			continue
		}
		if got := e.String(); got != tc.want {
			t.Errorf("ParseFilter(%q) = %s; want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, `userName`, `userName eq`, `userName eq "x`, `userName eq 'x'`, `userName xx "x"`, `eq "x"`,
		`(userName eq "x"`, `userName eq "x")`, `userName eq "x" and`, `not userName eq "x"`, `1abc eq "x"`,
		`emails[type eq "work"`, `emails[a[b eq "c"]]`, `name.givenName[x eq "y"]`, `userName eq bare`,
		`userName eq "x" "y"`, `a.b.c eq "x"`, `userName eq 01`, `userName eq -`, `user name eq "x"`, "userName eq \"\xff\"",
		`emails[type eq "work"].1 eq "x"`, strings.Repeat("(", MaxFilterDepth+2) + `a pr` + strings.Repeat(")", MaxFilterDepth+2),
		`a eq "` + strings.Repeat("x", MaxFilterLen) + `"`, `http://x:a eq "b"`, `userName eq "\q"`, `userName % "x"`,
	} {
		_, err := ParseFilter(in)
		var se *Error
		if !errors.As(err, &se) || se.ScimType != InvalidFilter || se.Status != 400 {
			t.Errorf("ParseFilter(%q) error = %v; want a 400 invalidFilter", in, err)
		}
	}
}

func TestParsePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`active`, `active`},
		{`name.familyName`, `name.familyName`},
		{`emails[type eq "work"].value`, `emails[type eq "work"].value`},
		{`members[value eq "2819c223-7f76-453a-919d-413861904646"]`, `members[value eq "2819c223-7f76-453a-919d-413861904646"]`},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`},
	} {
		p, err := ParsePath(tc.in)
		if err != nil || p.String() != tc.want {
			t.Errorf("ParsePath(%q) = %s, %v; want %s", tc.in, p, err, tc.want)
		}
	}
	for _, in := range []string{``, `[`, `emails[`, `emails[type eq "work"]x`, `emails[type eq "work"].`, `name.givenName[a eq "b"]`, `a b`, `"str"`} {
		_, err := ParsePath(in)
		var se *Error
		if !errors.As(err, &se) || se.ScimType != InvalidPath {
			t.Errorf("ParsePath(%q) error = %v; want invalidPath", in, err)
		}
	}
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := DecodeObject([]byte(s))
	if err != nil {
		t.Fatalf("DecodeObject(%s) error = %v", s, err)
	}
	return m
}

func TestMatch(t *testing.T) {
	t.Parallel()
	res := decode(t, `{"id":"Ab1","userName":"BJensen","externalId":"Ext","active":false,"title":"",
		"name":{"familyName":"Jensen"},
		"emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"babs@jensen.org","type":"home"}]}`)
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{`userName eq "bjensen"`, true},
		{`USERNAME eq "BJENSEN"`, true},
		{`externalId eq "ext"`, false},
		{`externalId eq "Ext"`, true},
		{`id eq "ab1"`, false},
		{`active eq false`, true},
		{`active eq "false"`, false},
		{`title pr`, false},
		{`name.familyName sw "jen"`, true},
		{`name.givenName pr`, false},
		{`emails eq "BABS@jensen.org"`, true},
		{`emails.value ew "@example.com"`, true},
		{`emails[type eq "work"].value eq "babs@jensen.org"`, false},
		{`emails[type eq "home"].value eq "babs@jensen.org"`, true},
		{`emails[type eq "work" and primary eq true]`, true},
		{`not (emails[type eq "other"])`, true},
		{`userName eq "x" or emails co "jensen.org"`, true},
		{`userName ne "bjensen"`, false},
		{`nickName ne "x"`, true},
	} {
		e, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q) error = %v", tc.filter, err)
		}
		got, err := Match(e, res)
		if err != nil || got != tc.want {
			t.Errorf("Match(%s) = %v, %v; want %v", tc.filter, got, err, tc.want)
		}
	}
	e, _ := ParseFilter(`userName gt "a"`)
	if _, err := Match(e, res); err == nil {
		t.Error("Match(gt) error = nil; want invalidFilter")
	}
}

func TestPlanUserFilter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		filter string
		want   Query
	}{
		{`userName eq "a@b.c"`, Query{UserName: "a@b.c"}},
		{`externalId eq "X" and userName eq "A"`, Query{ExternalID: "X", UserName: "A"}},
		{`emails[type eq "work"].value eq "w@b.c"`, Query{Email: "w@b.c"}},
		{`emails.value eq "w@b.c"`, Query{Email: "w@b.c"}},
		{`id eq "scu_1"`, Query{ID: "scu_1"}},
		{`userName eq "a" and userName eq "A"`, Query{UserName: "a"}},
		{`userName eq "a" and userName eq "b"`, Query{UserName: "a", Empty: true}},
	} {
		e, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		q, err := PlanUserFilter(e)
		if err != nil || q != tc.want {
			t.Errorf("PlanUserFilter(%s) = %+v, %v; want %+v", tc.filter, q, err, tc.want)
		}
	}
}

func patchUser(t *testing.T, user, patch string) (map[string]any, error) {
	t.Helper()
	attrs := decode(t, user)
	if _, err := NormalizeUser(attrs); err != nil {
		t.Fatalf("NormalizeUser(%s) error = %v", user, err)
	}
	ops, err := DecodePatch([]byte(patch))
	if err != nil {
		return nil, err
	}
	if err := ApplyPatch(attrs, ops, UserSchema); err != nil {
		return nil, err
	}
	if _, err := NormalizeUser(attrs); err != nil {
		return nil, err
	}
	return attrs, nil
}

func TestApplyPatch(t *testing.T) {
	t.Parallel()
	user := `{"userName":"u@x.example","active":true,"name":{"givenName":"A","familyName":"B"},
		"emails":[{"value":"u@x.example","type":"work","primary":true}]}`
	for _, tc := range []struct {
		name, patch, want string
	}{
		{"okta deactivate", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`, `"active":false`},
		{"entra deactivate", `{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`, `"active":false`},
		{"entra reactivate", `{"Operations":[{"op":"Replace","path":"active","value":"True"}]}`, `"active":true`},
		{"sub-attribute", `{"Operations":[{"op":"replace","path":"name.familyName","value":"C"}]}`, `"familyName":"C"`},
		{"filtered value", `{"Operations":[{"op":"replace","path":"emails[type eq \"work\"].value","value":"n@x.example"}]}`, `"value":"n@x.example"`},
		{"add a new typed value", `{"Operations":[{"op":"Add","path":"emails[type eq \"home\"].value","value":"h@x.example"}]}`, `"type":"home","value":"h@x.example"`},
		{"add to a list", `{"Operations":[{"op":"add","path":"emails","value":[{"value":"o@x.example","type":"other"}]}]}`, `"value":"o@x.example"`},
		{"remove filtered", `{"Operations":[{"op":"remove","path":"emails[type eq \"work\"]"}]}`, `"emails":[]`},
		{"remove attribute", `{"Operations":[{"op":"remove","path":"name"}]}`, `"userName"`},
		{"extension by path", `{"Operations":[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"R&D"}]}`, `"department":"R\u0026D"`},
		{"core by full path", `{"Operations":[{"op":"replace","value":{"urn:ietf:params:scim:schemas:core:2.0:User:title":"Boss"}}]}`, `"title":"Boss"`},
		{"extension object", `{"Operations":[{"op":"add","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"costCenter":"42"}}}]}`, `"costCenter":"42"`},
		{"op case and key case", `{"operations":[{"OP":"REPLACE","Path":"DisplayName","Value":"Disp"}]}`, `"displayName":"Disp"`},
	} {
		got, err := patchUser(t, user, tc.patch)
		if err != nil {
			t.Errorf("%s: error = %v", tc.name, err)
			continue
		}
		b, _ := json.Marshal(got)
		if !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: result %s; want it to contain %s", tc.name, b, tc.want)
		}
	}
	for _, tc := range []struct{ name, patch, scimType string }{
		{"remove userName", `{"Operations":[{"op":"remove","path":"userName"}]}`, InvalidValue},
		{"replace on no match with a non-eq filter", `{"Operations":[{"op":"replace","path":"emails[type co \"x\"].value","value":"a@b.c"}]}`, NoTarget},
		{"sub of a list without filter", `{"Operations":[{"op":"replace","path":"emails.value","value":"a@b.c"}]}`, InvalidPath},
		{"two primaries", `{"Operations":[{"op":"add","path":"emails","value":[{"value":"p@x.example","primary":true}]}]}`, InvalidValue},
		{"not an email", `{"Operations":[{"op":"replace","path":"emails[type eq \"work\"].value","value":"nope"}]}`, InvalidValue},
		{"control characters", `{"Operations":[{"op":"replace","path":"title","value":"a\u0000b"}]}`, InvalidValue},
		{"value not an object", `{"Operations":[{"op":"replace","value":"active"}]}`, InvalidValue},
		{"missing value", `{"Operations":[{"op":"add","path":"title"}]}`, InvalidValue},
	} {
		_, err := patchUser(t, user, tc.patch)
		var se *Error
		if !errors.As(err, &se) || se.ScimType != tc.scimType {
			t.Errorf("%s: error = %v; want %s", tc.name, err, tc.scimType)
		}
	}
}

func TestNormalizeUser(t *testing.T) {
	t.Parallel()
	attrs := decode(t, `{"schemas":["x"],"id":"forged","meta":{},"password":"p","groups":[],"unknownThing":1,
		"UserName":"Jo@Example.COM","active":"TRUE","emails":[{"Value":"jo.work@example.com","Type":"work"},{"value":"jo@example.com","Primary":"true"}],
		"name":{"givenName":"Jo","familyName":"Doe"},"nickName":null}`)
	u, err := NormalizeUser(attrs)
	if err != nil {
		t.Fatal(err)
	}
	if u.UserName != "Jo@Example.COM" || !u.Active || !u.HasActive || u.Email != "jo@example.com" || u.Name != "Jo Doe" {
		t.Errorf("NormalizeUser = %+v; want userName kept, active, primary email linked, name Jo Doe", u)
	}
	for _, k := range []string{"schemas", "id", "meta", "password", "groups", "unknownThing", "nickName", "UserName"} {
		if _, ok := attrs[k]; ok {
			t.Errorf("NormalizeUser kept %q", k)
		}
	}
	if u, err := NormalizeUser(decode(t, `{"userName":"a@b.example"}`)); err != nil || u.Email != "a@b.example" || u.HasActive {
		t.Errorf("NormalizeUser(email userName) = %+v, %v; want linked by userName, active unsaid", u, err)
	}
	for _, in := range []string{`{"userName":"no-email"}`, `{"userName":""}`, `{"userName":7}`, `{"userName":"a@b.c","active":1}`,
		`{"userName":"a@b.c","emails":"a@b.c"}`, `{"userName":"a@b.c","name":"x"}`, `{"userName":"a@b.c","urn:x:Ext":"v"}`} {
		if _, err := NormalizeUser(decode(t, in)); err == nil {
			t.Errorf("NormalizeUser(%s) error = nil; want invalidValue", in)
		}
	}
}

// FuzzParseFilter: any input parses or is refused with a 400 invalidFilter;
// what parses prints to a filter that parses to the same thing.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`userName eq "bjensen"`, `emails[type eq "work"].value eq "a@b.c"`, `not (a pr) or b ne 1e3 and c eq null`,
		`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x"`, `members[value eq "\u00e9"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseFilter(s)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 || se.ScimType != InvalidFilter {
				t.Fatalf("ParseFilter(%q) error = %v; want a 400 invalidFilter", s, err)
			}
			return
		}
		again, err := ParseFilter(e.String())
		if err != nil || again.String() != e.String() {
			t.Fatalf("ParseFilter(%q).String() = %q, which parses to %v, %v", s, e.String(), again, err)
		}
		if _, err := PlanUserFilter(e); err != nil && !strings.Contains(err.Error(), InvalidFilter) {
			t.Fatalf("PlanUserFilter(%q) error = %v", s, err)
		}
		_, _ = Match(e, map[string]any{"userName": "x", "emails": []any{map[string]any{"value": "a@b.c"}}})
	})
}

// FuzzPatch: any body decodes or is refused with a 400; applying what
// decodes to a user never panics and leaves either a valid user or a 400.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`,
		`{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"Operations":[{"op":"Add","path":"emails[type eq \"work\"].value","value":"x@y.z"},{"op":"remove","path":"name.givenName"}]}`,
		`{"Operations":[{"op":"Remove","path":"members","value":[{"value":"a"}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := DecodePatch(body)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("DecodePatch(%q) error = %v; want a 400", body, err)
			}
			return
		}
		attrs := map[string]any{"userName": "u@x.example", "active": true, "emails": []any{map[string]any{"value": "u@x.example", "type": "work"}}}
		if err := ApplyPatch(attrs, ops, UserSchema); err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("ApplyPatch(%q) error = %v; want a 400", body, err)
			}
			return
		}
		u, err := NormalizeUser(attrs)
		if err != nil {
			return
		}
		if u.UserName == "" || u.Email == "" {
			t.Fatalf("NormalizeUser after %q = %+v; want a userName and an email", body, u)
		}
		if _, err := json.Marshal(u.Attrs); err != nil {
			t.Fatalf("attributes after %q do not marshal: %v", body, err)
		}
	})
}

// FuzzUser: any body is a valid user or refused with a 400, and a valid
// one is stable: normalizing it again changes nothing.
func FuzzUser(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"test.user@okta.local","name":{"givenName":"Test","familyName":"User"},"emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],"password":"x","active":true}`,
		`{"userName":"Test_User","active":"False","emails":[{"primary":"True","type":"work","value":"t@testuser.com"}],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"1"}}}`,
		`{"displayName":"Group","members":[{"value":"scu_1"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		attrs, err := DecodeObject(body)
		if err != nil {
			return
		}
		if g, err := NormalizeGroup(cloneMap(t, attrs)); err == nil && g.DisplayName == "" {
			t.Fatalf("NormalizeGroup(%q) accepted an empty displayName", body)
		}
		u, err := NormalizeUser(attrs)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("NormalizeUser(%q) error = %v; want a 400", body, err)
			}
			return
		}
		if !utf8.ValidString(u.UserName) || !isEmail(u.Email) {
			t.Fatalf("NormalizeUser(%q) = %+v; want valid UTF-8 and an email", body, u)
		}
		b1, _ := json.Marshal(u.Attrs)
		again, err := NormalizeUser(cloneMap(t, u.Attrs))
		if err != nil {
			t.Fatalf("normalizing %s again: %v", b1, err)
		}
		if b2, _ := json.Marshal(again.Attrs); string(b1) != string(b2) {
			t.Fatalf("normalizing again changed %s to %s", b1, b2)
		}
	})
}

func cloneMap(t *testing.T, m map[string]any) map[string]any {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Clone(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
