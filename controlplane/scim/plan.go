package scim

import "strings"

// The filters the service provider answers: eq comparisons joined by and.
// Each comparison names an attribute the store can look up directly, so a
// filter never scans an org's users; Match then checks the whole filter on
// what the lookup found (e.g. an email's type).
const (
	unsupportedUserFilter  = `only eq on userName, externalId, id and emails (emails, emails.value, emails[type eq "work"].value), joined by and, is supported`
	unsupportedGroupFilter = `only eq on displayName, externalId and id, and members[value eq "..."], joined by and, is supported`
)

// Query is what a filter asks the store for: the values the resources'
// indexed attributes must equal ("" for no condition). Empty means the
// filter can match nothing (two different values for one attribute).
type Query struct {
	ID          string
	UserName    string
	ExternalID  string
	Email       string
	DisplayName string
	// Member is a user id the group must have as a member (checked on the
	// group's members, not by the store).
	Member string
	Empty  bool
}

// Indexed reports whether the query names an attribute the store looks up.
func (q Query) Indexed() bool {
	return q.ID != "" || q.UserName != "" || q.ExternalID != "" || q.Email != "" || q.DisplayName != ""
}

// PlanUserFilter turns a Users filter into its store query, or refuses it
// with invalidFilter.
func PlanUserFilter(e Expr) (Query, error) {
	var q Query
	if err := planUser(e, &q); err != nil {
		return Query{}, err
	}
	if !q.Indexed() {
		return Query{}, Errorf(InvalidFilter, "%s", unsupportedUserFilter)
	}
	return q, nil
}

func planUser(e Expr, q *Query) error {
	switch e := e.(type) {
	case *LogExpr:
		if e.Op != "and" {
			break
		}
		if err := planUser(e.Left, q); err != nil {
			return err
		}
		return planUser(e.Right, q)
	case *AttrExpr:
		v, ok := e.Value.(string)
		if e.Op != "eq" || !ok {
			break
		}
		switch {
		case e.Path.Is(UserSchema, "userName", ""):
			q.set(&q.UserName, v, true)
		case e.Path.Is(UserSchema, "externalId", ""):
			q.set(&q.ExternalID, v, false)
		case e.Path.Is(UserSchema, "id", ""):
			q.set(&q.ID, v, false)
		case e.Path.Is(UserSchema, "emails", ""), e.Path.Is(UserSchema, "emails", "value"):
			q.set(&q.Email, v, true)
		default:
			return Errorf(InvalidFilter, "%s", unsupportedUserFilter)
		}
		return nil
	case *ValuePathExpr:
		if !e.Path.Is(UserSchema, "emails", "") {
			break
		}
		value, ok := valueEq(e.Filter)
		if !ok {
			break
		}
		q.set(&q.Email, value, true)
		return nil
	}
	return Errorf(InvalidFilter, "%s", unsupportedUserFilter)
}

// PlanGroupFilter turns a Groups filter into its store query, or refuses
// it with invalidFilter.
func PlanGroupFilter(e Expr) (Query, error) {
	var q Query
	if err := planGroup(e, &q); err != nil {
		return Query{}, err
	}
	return q, nil
}

func planGroup(e Expr, q *Query) error {
	switch e := e.(type) {
	case *LogExpr:
		if e.Op != "and" {
			break
		}
		if err := planGroup(e.Left, q); err != nil {
			return err
		}
		return planGroup(e.Right, q)
	case *AttrExpr:
		v, ok := e.Value.(string)
		if e.Op != "eq" || !ok {
			break
		}
		switch {
		case e.Path.Is(GroupSchema, "displayName", ""):
			q.set(&q.DisplayName, v, true)
		case e.Path.Is(GroupSchema, "externalId", ""):
			q.set(&q.ExternalID, v, false)
		case e.Path.Is(GroupSchema, "id", ""):
			q.set(&q.ID, v, false)
		case e.Path.Is(GroupSchema, "members", ""), e.Path.Is(GroupSchema, "members", "value"):
			q.set(&q.Member, v, false)
		default:
			return Errorf(InvalidFilter, "%s", unsupportedGroupFilter)
		}
		return nil
	case *ValuePathExpr:
		if !e.Path.Is(GroupSchema, "members", "") {
			break
		}
		value, ok := valueEq(e.Filter)
		if !ok {
			break
		}
		q.set(&q.Member, value, false)
		return nil
	}
	return Errorf(InvalidFilter, "%s", unsupportedGroupFilter)
}

// set records that a field must equal v; a second, different value makes
// the query empty.
func (q *Query) set(field *string, v string, foldCase bool) {
	switch {
	case *field == "":
		*field = v
	case foldCase && strings.EqualFold(*field, v):
	case *field != v:
		q.Empty = true
	}
}

// valueEq finds "value eq <string>" among a value filter's and-joined eq
// comparisons; any other kind of filter gives false.
func valueEq(f Expr) (string, bool) {
	var value string
	var walk func(Expr) bool
	walk = func(e Expr) bool {
		switch e := e.(type) {
		case *LogExpr:
			return e.Op == "and" && walk(e.Left) && walk(e.Right)
		case *AttrExpr:
			if e.Op != "eq" || e.Path.URI != "" || e.Path.Sub != "" {
				return false
			}
			if strings.EqualFold(e.Path.Name, "value") {
				s, ok := e.Value.(string)
				if !ok || (value != "" && value != s) {
					return false
				}
				value = s
			}
			return true
		}
		return false
	}
	ok := walk(f)
	return value, ok && value != ""
}
