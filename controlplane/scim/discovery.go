package scim

import "strings"

// MaxResults is the most resources one list response holds (the filter
// config's maxResults); a larger count is lowered to it.
const MaxResults = 200

// ServiceProviderConfig is the /ServiceProviderConfig document (RFC 7643
// section 5): what this service provider supports. baseURL is the SCIM
// root, e.g. https://toktra.example/v1/scim/v2.
func ServiceProviderConfig(baseURL string) map[string]any {
	return map[string]any{
		"schemas":          []string{ServiceProviderConfigSchema},
		"documentationUri": "https://github.com/toktra/toktra#scim",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type":        "oauthbearertoken",
			"name":        "OAuth Bearer Token",
			"description": "The organization's SCIM token (POST /v1/scim/token), sent as Authorization: Bearer <token>",
			"primary":     true,
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": baseURL + "/ServiceProviderConfig"},
	}
}

// ResourceTypes are the /ResourceTypes documents (RFC 7643 section 6).
func ResourceTypes(baseURL string) []map[string]any {
	rt := func(id, endpoint, schema, desc string, ext []any) map[string]any {
		m := map[string]any{
			"schemas":     []string{ResourceTypeSchema},
			"id":          id,
			"name":        id,
			"endpoint":    endpoint,
			"description": desc,
			"schema":      schema,
			"meta":        map[string]any{"resourceType": "ResourceType", "location": baseURL + "/ResourceTypes/" + id},
		}
		if ext != nil {
			m["schemaExtensions"] = ext
		}
		return m
	}
	return []map[string]any{
		rt("User", "/Users", UserSchema, "A person; deactivating or deleting one locks them out of LLM tools",
			[]any{map[string]any{"schema": EnterpriseUserSchema, "required": false}}),
		rt("Group", "/Groups", GroupSchema, "A group of users", nil),
	}
}

// attr describes one attribute for /Schemas.
type attr struct {
	name, typ, mutability, returned, uniqueness string
	multi, required, caseExact                  bool
	subs                                        []attr
	desc                                        string
}

func (a attr) doc() map[string]any {
	m := map[string]any{
		"name":        a.name,
		"type":        a.typ,
		"multiValued": a.multi,
		"description": a.desc,
		"required":    a.required,
		"caseExact":   a.caseExact,
		"mutability":  or(a.mutability, "readWrite"),
		"returned":    or(a.returned, "default"),
		"uniqueness":  or(a.uniqueness, "none"),
	}
	if a.typ == "reference" {
		m["referenceTypes"] = []string{"User"}
	}
	if len(a.subs) > 0 {
		var subs []any
		for _, s := range a.subs {
			subs = append(subs, s.doc())
		}
		m["subAttributes"] = subs
	}
	return m
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func str(name, desc string) attr { return attr{name: name, typ: "string", desc: desc} }

func multi(name, desc string, subs ...attr) attr {
	return attr{name: name, typ: "complex", multi: true, desc: desc, subs: subs}
}

var valueSubs = []attr{
	str("value", "The value"),
	str("display", "A human-readable name"),
	str("type", "A label, e.g. work"),
	{name: "primary", typ: "boolean", desc: "The primary value; at most one"},
}

var userSchemaAttrs = []attr{
	{name: "userName", typ: "string", required: true, uniqueness: "server", desc: "Unique identifier of the user in this organization, case-insensitive"},
	{name: "name", typ: "complex", desc: "The user's name", subs: []attr{
		str("formatted", "The full name"), str("familyName", "Family name"), str("givenName", "Given name"),
		str("middleName", "Middle name"), str("honorificPrefix", "Honorific prefix"), str("honorificSuffix", "Honorific suffix"),
	}},
	str("displayName", "The name to display"),
	str("nickName", "Casual name"),
	{name: "profileUrl", typ: "reference", desc: "Profile URL"},
	str("title", "Job title"),
	str("userType", "Relationship to the organization, e.g. Employee"),
	str("preferredLanguage", "Preferred language"),
	str("locale", "Locale"),
	str("timezone", "Time zone"),
	{name: "active", typ: "boolean", desc: "false locks the user out of LLM tools at once; true again does not unlock (an admin overrides the lockout)"},
	multi("emails", "Email addresses; the primary (else work, else first) one links the user to Toktra's user of that email", valueSubs...),
	multi("phoneNumbers", "Phone numbers", valueSubs...),
	multi("ims", "Instant messaging addresses", valueSubs...),
	multi("photos", "Photo URLs", valueSubs...),
	multi("addresses", "Physical addresses", str("formatted", "Full address"), str("streetAddress", "Street"),
		str("locality", "City"), str("region", "Region"), str("postalCode", "Postal code"), str("country", "Country"),
		str("type", "A label, e.g. work"), attr{name: "primary", typ: "boolean", desc: "The primary address"}),
	multi("entitlements", "Entitlements", valueSubs...),
	multi("roles", "Roles", valueSubs...),
	multi("x509Certificates", "Certificates", valueSubs...),
}

var enterpriseSchemaAttrs = []attr{
	str("employeeNumber", "Employee number"),
	str("costCenter", "Cost center"),
	str("organization", "Organization"),
	str("division", "Division"),
	str("department", "Department"),
	{name: "manager", typ: "complex", desc: "The user's manager", subs: []attr{
		str("value", "The manager's id"), {name: "$ref", typ: "reference", desc: "The manager's URI"}, str("displayName", "The manager's name"),
	}},
}

var groupSchemaAttrs = []attr{
	{name: "displayName", typ: "string", required: true, uniqueness: "server", desc: "The group's name, unique in this organization (case-insensitive)"},
	{name: "members", typ: "complex", multi: true, desc: "The group's users", subs: []attr{
		{name: "value", typ: "string", mutability: "immutable", caseExact: true, desc: "The member's user id"},
		{name: "$ref", typ: "reference", mutability: "immutable", desc: "The member's URI"},
		{name: "display", typ: "string", mutability: "readOnly", desc: "The member's userName"},
		{name: "type", typ: "string", mutability: "immutable", desc: "User"},
	}},
}

// Schemas are the /Schemas documents (RFC 7643 section 7).
func Schemas(baseURL string) []map[string]any {
	schema := func(id, name, desc string, attrs []attr) map[string]any {
		var as []any
		for _, a := range attrs {
			as = append(as, a.doc())
		}
		return map[string]any{
			"schemas":     []string{SchemaSchema},
			"id":          id,
			"name":        name,
			"description": desc,
			"attributes":  as,
			"meta":        map[string]any{"resourceType": "Schema", "location": baseURL + "/Schemas/" + id},
		}
	}
	return []map[string]any{
		schema(UserSchema, "User", "User account", userSchemaAttrs),
		schema(EnterpriseUserSchema, "EnterpriseUser", "Enterprise user", enterpriseSchemaAttrs),
		schema(GroupSchema, "Group", "Group", groupSchemaAttrs),
	}
}

// FindByID returns the document whose id is id (compared ignoring case,
// as clients spell "User" or "user").
func FindByID(docs []map[string]any, id string) (map[string]any, bool) {
	for _, d := range docs {
		if s, _ := d["id"].(string); strings.EqualFold(s, id) {
			return d, true
		}
	}
	return nil, false
}
