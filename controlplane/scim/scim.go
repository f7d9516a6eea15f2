// Package scim is the SCIM 2.0 protocol (RFC 7643, RFC 7644) as Toktra's
// service provider speaks it: the filter and PATCH path grammar, PATCH
// operations applied to a resource, the User and Group resources and what
// is accepted in them, the discovery documents, and the error format.
// It knows nothing of storage or HTTP routing; package api serves it.
//
// Clients differ from the RFC in known ways, accepted here on purpose:
// Microsoft Entra ID capitalises PATCH ops ("Replace") and sends booleans
// as strings ("False"), Okta replaces attributes with a PATCH that has no
// path, and Entra filters users with emails[type eq "work"].value eq "...".
package scim

import (
	"fmt"
	"net/http"
	"strconv"
)

// Schema and message URNs.
const (
	UserSchema           = "urn:ietf:params:scim:schemas:core:2.0:User"
	EnterpriseUserSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	GroupSchema          = "urn:ietf:params:scim:schemas:core:2.0:Group"
	ListResponseSchema   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	PatchOpSchema        = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	ErrorSchema          = "urn:ietf:params:scim:api:messages:2.0:Error"

	ServiceProviderConfigSchema = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	ResourceTypeSchema          = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema                = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// MediaType is the SCIM content type (RFC 7644 section 8.1).
const MediaType = "application/scim+json"

// Error types of RFC 7644 section 3.12 (scimType).
const (
	InvalidFilter = "invalidFilter"
	TooMany       = "tooMany"
	Uniqueness    = "uniqueness"
	Mutability    = "mutability"
	InvalidSyntax = "invalidSyntax"
	InvalidPath   = "invalidPath"
	NoTarget      = "noTarget"
	InvalidValue  = "invalidValue"
	InvalidVers   = "invalidVers"
	Sensitive     = "sensitive"
)

// Error is a SCIM error response: an HTTP status, an optional scimType and
// a human-readable detail.
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string {
	if e.ScimType == "" {
		return fmt.Sprintf("scim %d: %s", e.Status, e.Detail)
	}
	return fmt.Sprintf("scim %d %s: %s", e.Status, e.ScimType, e.Detail)
}

// Body is the error as RFC 7644 section 3.12 spells it: status is a string.
func (e *Error) Body() ErrorBody {
	return ErrorBody{Schemas: []string{ErrorSchema}, Status: strconv.Itoa(e.Status), ScimType: e.ScimType, Detail: e.Detail}
}

// ErrorBody is the JSON of an error response.
type ErrorBody struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}

// Errorf returns a 400 error of the given scimType.
func Errorf(scimType, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}
