package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on what a resource may hold.
const (
	// MaxStringLen bounds a string attribute, in bytes.
	MaxStringLen = 1024
	// MaxValues bounds a multi-valued attribute other than a group's members.
	MaxValues = 64
	// MaxMembers bounds a group's members, and the members one request names.
	MaxMembers = 50000
	// MaxAttributesBytes bounds a resource's stored attributes (as JSON).
	MaxAttributesBytes = 64 << 10
	// maxDepth bounds how deeply attributes nest (extension > complex > sub).
	maxDepth = 4
)

// userAttrs are the core User attributes accepted, by lower-cased name,
// with the spelling they are stored and returned in. groups (read-only,
// from group membership) and password (never kept) are not among them.
var userAttrs = canon("userName", "name", "displayName", "nickName", "profileUrl", "title", "userType",
	"preferredLanguage", "locale", "timezone", "active", "emails", "phoneNumbers", "ims", "photos",
	"addresses", "entitlements", "roles", "x509Certificates", "externalId")

// groupAttrs are the core Group attributes accepted; members is handled
// apart from the others (it is stored as memberships).
var groupAttrs = canon("displayName", "externalId", "members")

// subAttrs are the sub-attributes of core complex attributes, by
// lower-cased name, in their spelling.
var subAttrs = canon("formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix",
	"value", "display", "type", "primary", "$ref", "streetAddress", "locality", "region", "postalCode", "country",
	"employeeNumber", "costCenter", "organization", "division", "department", "manager", "displayName")

// multiValued are the core attributes that hold lists.
var multiValued = canon("emails", "phoneNumbers", "ims", "photos", "addresses", "entitlements", "roles",
	"x509Certificates", "members")

func canon(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = n
	}
	return m
}

// readOnlyAttrs are dropped from what clients send: the server sets them.
var readOnlyAttrs = map[string]bool{"id": true, "meta": true, "schemas": true, "groups": true, "password": true}

// DecodeObject reads a request body that must be exactly one JSON object.
func DecodeObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errorf(InvalidSyntax, "request body required")
		}
		return nil, Errorf(InvalidSyntax, "malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, Errorf(InvalidSyntax, "the body must be a single JSON object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, Errorf(InvalidSyntax, "the body must be a JSON object")
	}
	return obj, nil
}

// User is a SCIM user's attributes as accepted, and what Toktra reads
// from them.
type User struct {
	// Attrs are the accepted attributes, core ones in their canonical
	// spelling, extensions under their schema URN; never id, meta,
	// schemas, groups or password.
	Attrs      map[string]any
	UserName   string
	ExternalID string
	// Active is false only when the client said so; HasActive says whether
	// it said anything (a PUT without active keeps the stored state).
	Active    bool
	HasActive bool
	// Emails are the email values, lower-cased, in order.
	Emails []string
	// Email is the address the user is linked to a Toktra user by: the
	// primary email, else the work one, else the first, else userName.
	Email string
	// Name is a display name for the Toktra user, "" if none.
	Name string
}

// NormalizeUser checks a User's attributes and derives what Toktra reads
// from them. attrs is changed in place: core names take their canonical
// spelling, string booleans ("False", as Entra ID sends) become booleans,
// nulls and read-only attributes are removed, unknown attributes outside
// an extension schema are dropped.
func NormalizeUser(attrs map[string]any) (*User, error) {
	if err := normalize(attrs, userAttrs); err != nil {
		return nil, err
	}
	u := &User{Attrs: attrs, Active: true}
	var ok bool
	if u.UserName, ok = attrs["userName"].(string); !ok || strings.TrimSpace(u.UserName) == "" {
		return nil, Errorf(InvalidValue, "userName: a non-empty string is required")
	}
	if v, present := attrs["externalId"]; present {
		if u.ExternalID, ok = v.(string); !ok {
			return nil, Errorf(InvalidValue, "externalId: a string")
		}
	}
	if v, present := attrs["active"]; present {
		b, ok := v.(bool)
		if !ok {
			return nil, Errorf(InvalidValue, "active: true or false")
		}
		u.Active, u.HasActive = b, true
	}
	for _, key := range []string{"displayName", "nickName", "title", "userType", "locale", "timezone", "preferredLanguage", "profileUrl"} {
		if v, present := attrs[key]; present {
			if _, ok := v.(string); !ok {
				return nil, Errorf(InvalidValue, "%s: a string", key)
			}
		}
	}
	if v, present := attrs["name"]; present {
		name, ok := v.(map[string]any)
		if !ok {
			return nil, Errorf(InvalidValue, "name: an object")
		}
		for k, sv := range name {
			if _, ok := sv.(string); !ok {
				return nil, Errorf(InvalidValue, "name.%s: a string", k)
			}
		}
	}
	if err := u.readEmails(); err != nil {
		return nil, err
	}
	u.Name = displayName(attrs)
	if b, err := json.Marshal(attrs); err != nil || len(b) > MaxAttributesBytes {
		return nil, Errorf(InvalidValue, "the user's attributes take more than %d bytes", MaxAttributesBytes)
	}
	return u, nil
}

func (u *User) readEmails() error {
	v, present := u.Attrs["emails"]
	var primary, work, first string
	if present {
		for i, el := range v.([]any) {
			e, ok := el.(map[string]any)
			if !ok {
				return Errorf(InvalidValue, "emails[%d]: an object with a value", i)
			}
			value, ok := e["value"].(string)
			if !ok || !isEmail(value) {
				return Errorf(InvalidValue, "emails[%d].value: an email address", i)
			}
			value = strings.ToLower(value)
			u.Emails = append(u.Emails, value)
			if p, ok := e["primary"]; ok {
				pb, ok := p.(bool)
				if !ok {
					return Errorf(InvalidValue, "emails[%d].primary: true or false", i)
				}
				if pb {
					if primary != "" {
						return Errorf(InvalidValue, "emails: more than one is primary")
					}
					primary = value
				}
			}
			if t, _ := e["type"].(string); strings.EqualFold(t, "work") && work == "" {
				work = value
			}
			if first == "" {
				first = value
			}
		}
	}
	for _, c := range []string{primary, work, first} {
		if c != "" {
			u.Email = c
			return nil
		}
	}
	if isEmail(u.UserName) {
		u.Email = strings.ToLower(u.UserName)
		return nil
	}
	return Errorf(InvalidValue, "the user has no email address: Toktra links users by email (emails[].value, or an email address as userName)")
}

// isEmail accepts a plain address, as the admin API does: no display name,
// no angle brackets.
func isEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

func displayName(attrs map[string]any) string {
	if s, _ := attrs["displayName"].(string); strings.TrimSpace(s) != "" {
		return strings.TrimSpace(s)
	}
	name, _ := attrs["name"].(map[string]any)
	if s, _ := name["formatted"].(string); strings.TrimSpace(s) != "" {
		return strings.TrimSpace(s)
	}
	given, _ := name["givenName"].(string)
	family, _ := name["familyName"].(string)
	return strings.TrimSpace(strings.TrimSpace(given) + " " + strings.TrimSpace(family))
}

// Group is a SCIM group's attributes as accepted.
type Group struct {
	// Attrs are the accepted attributes other than members.
	Attrs       map[string]any
	DisplayName string
	ExternalID  string
	// Members are the member user ids, in order, without repeats.
	Members []string
	// HasMembers says whether the body named members at all.
	HasMembers bool
}

// NormalizeGroup checks a Group's attributes; members are taken out of
// attrs into Members.
func NormalizeGroup(attrs map[string]any) (*Group, error) {
	if err := normalize(attrs, groupAttrs); err != nil {
		return nil, err
	}
	g := &Group{Attrs: attrs}
	var ok bool
	if g.DisplayName, ok = attrs["displayName"].(string); !ok || strings.TrimSpace(g.DisplayName) == "" {
		return nil, Errorf(InvalidValue, "displayName: a non-empty string is required")
	}
	if v, present := attrs["externalId"]; present {
		if g.ExternalID, ok = v.(string); !ok {
			return nil, Errorf(InvalidValue, "externalId: a string")
		}
	}
	if v, present := attrs["members"]; present {
		g.HasMembers = true
		members, err := memberIDs(v)
		if err != nil {
			return nil, err
		}
		g.Members = members
		delete(attrs, "members")
	}
	if b, err := json.Marshal(attrs); err != nil || len(b) > MaxAttributesBytes {
		return nil, Errorf(InvalidValue, "the group's attributes take more than %d bytes", MaxAttributesBytes)
	}
	return g, nil
}

// memberIDs reads members' values: [{"value": "id", "display": ...}, ...].
func memberIDs(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, Errorf(InvalidValue, "members: a list of {\"value\": user id}")
	}
	if len(list) > MaxMembers {
		return nil, Errorf(InvalidValue, "members: at most %d", MaxMembers)
	}
	seen := map[string]bool{}
	var ids []string
	for i, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			return nil, Errorf(InvalidValue, "members[%d]: an object with a value", i)
		}
		id, ok := m["value"].(string)
		if !ok || id == "" {
			return nil, Errorf(InvalidValue, "members[%d].value: a user id", i)
		}
		if t, ok := m["type"].(string); ok && !strings.EqualFold(t, "User") {
			return nil, Errorf(InvalidValue, "members[%d]: only users can be members, not %q", i, t)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// normalize checks and canonicalizes a resource's attributes in place.
func normalize(attrs map[string]any, known map[string]string) error {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	for _, k := range keys {
		v := attrs[k]
		delete(attrs, k)
		lk := strings.ToLower(k)
		if readOnlyAttrs[lk] || v == nil {
			continue
		}
		if strings.HasPrefix(lk, "urn:") {
			// An extension's attributes, as one object under its URN.
			ext, ok := v.(map[string]any)
			if !ok {
				return Errorf(InvalidValue, "%s: an object of the extension's attributes", k)
			}
			if err := normalizeValue(k, ext, 1); err != nil {
				return err
			}
			attrs[k] = ext
			continue
		}
		name, ok := known[lk]
		if !ok {
			continue // not an attribute of this resource: ignored
		}
		nv, err := normalizeAttr(name, v)
		if err != nil {
			return err
		}
		if nv != nil {
			attrs[name] = nv
		}
	}
	return nil
}

// normalizeAttr checks one core attribute's value.
func normalizeAttr(name string, v any) (any, error) {
	if name == "active" {
		b, err := parseBool(name, v)
		return b, err
	}
	if _, ok := multiValued[strings.ToLower(name)]; ok {
		list, ok := v.([]any)
		if !ok {
			// A single value where a list belongs: a list of one.
			list = []any{v}
		}
		limit := MaxValues
		if name == "members" {
			limit = MaxMembers
		}
		if len(list) > limit {
			return nil, Errorf(InvalidValue, "%s: at most %d values", name, limit)
		}
		out := list[:0]
		for i, el := range list {
			if el == nil {
				continue
			}
			if obj, ok := el.(map[string]any); ok {
				canonSubs(obj)
				if p, ok := obj["primary"]; ok {
					b, err := parseBool(fmt.Sprintf("%s[%d].primary", name, i), p)
					if err != nil {
						return nil, err
					}
					obj["primary"] = b
				}
			}
			if err := normalizeValue(fmt.Sprintf("%s[%d]", name, i), el, 2); err != nil {
				return nil, err
			}
			out = append(out, el)
		}
		return out, nil
	}
	if obj, ok := v.(map[string]any); ok {
		canonSubs(obj)
	}
	return v, normalizeValue(name, v, 1)
}

func canonSubs(obj map[string]any) {
	for k, v := range obj {
		if c, ok := subAttrs[strings.ToLower(k)]; ok && c != k {
			delete(obj, k)
			obj[c] = v
		}
	}
}

// normalizeValue bounds a value: strings valid UTF-8 without control
// characters and not too long, objects and lists not too deep.
func normalizeValue(name string, v any, depth int) error {
	if depth > maxDepth {
		return Errorf(InvalidValue, "%s: nested too deeply", name)
	}
	switch v := v.(type) {
	case string:
		if len(v) > MaxStringLen {
			return Errorf(InvalidValue, "%s: longer than %d bytes", name, MaxStringLen)
		}
		if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return Errorf(InvalidValue, "%s: control characters are not allowed", name)
		}
	case map[string]any:
		for k, sv := range v {
			if sv == nil {
				delete(v, k)
				continue
			}
			if err := normalizeValue(name+"."+k, sv, depth+1); err != nil {
				return err
			}
		}
	case []any:
		if len(v) > MaxValues {
			return Errorf(InvalidValue, "%s: at most %d values", name, MaxValues)
		}
		for i, sv := range v {
			if err := normalizeValue(fmt.Sprintf("%s[%d]", name, i), sv, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseBool accepts a JSON boolean or, as Entra ID sends, "True"/"False"
// in any case.
func parseBool(name string, v any) (bool, error) {
	switch v := v.(type) {
	case bool:
		return v, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, Errorf(InvalidValue, "%s: true or false", name)
}
