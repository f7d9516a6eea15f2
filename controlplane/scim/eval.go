package scim

import (
	"strings"
)

// caseExact lists the attributes compared byte for byte (RFC 7643 marks
// them caseExact); every other string compares case-insensitively.
var caseExact = map[string]bool{"id": true, "externalid": true, "$ref": true}

// Match reports whether the resource (a decoded JSON object) matches the
// filter. It evaluates eq, ne, co, sw, ew and pr, with and, or, not and
// value paths; ordering operators (gt, lt, ge, le) give an invalidFilter
// error. An attribute absent from the resource matches nothing but ne and
// "eq null"-style negations, as RFC 7644 section 3.4.2.2 says.
func Match(e Expr, resource map[string]any) (bool, error) {
	switch e := e.(type) {
	case *LogExpr:
		l, err := Match(e.Left, resource)
		if err != nil {
			return false, err
		}
		if e.Op == "and" && !l {
			return false, nil
		}
		if e.Op == "or" && l {
			return true, nil
		}
		return Match(e.Right, resource)
	case *NotExpr:
		m, err := Match(e.X, resource)
		return !m, err
	case *ValuePathExpr:
		for _, el := range elements(lookup(resource, e.Path.Name)) {
			obj, ok := el.(map[string]any)
			if !ok {
				obj = map[string]any{"value": el}
			}
			m, err := Match(e.Filter, obj)
			if err != nil || m {
				return m, err
			}
		}
		return false, nil
	case *AttrExpr:
		v := lookup(resource, e.Path.Name)
		exact := caseExact[strings.ToLower(e.Path.Name)]
		if e.Path.Sub != "" {
			var subs []any
			for _, el := range elements(v) {
				if obj, ok := el.(map[string]any); ok {
					if sv := lookup(obj, e.Path.Sub); sv != nil {
						subs = append(subs, sv)
					}
				}
			}
			v = subs
			exact = caseExact[strings.ToLower(e.Path.Sub)]
		}
		if e.Op == "pr" {
			return present(v), nil
		}
		// A multi-valued attribute matches if any of its values does (for
		// complex values, their "value" sub-attribute).
		vals := elements(v)
		if e.Op == "ne" {
			for _, x := range vals {
				if ok, err := compare("eq", x, e.Value, exact); err != nil || ok {
					return false, err
				}
			}
			return true, nil
		}
		for _, x := range vals {
			if obj, ok := x.(map[string]any); ok {
				x = lookup(obj, "value")
			}
			if ok, err := compare(e.Op, x, e.Value, exact); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	}
	return false, Errorf(InvalidFilter, "unsupported filter")
}

// lookup finds an attribute of obj by name, ignoring case.
func lookup(obj map[string]any, name string) any {
	if v, ok := obj[name]; ok {
		return v
	}
	for k, v := range obj {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func elements(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	}
	return []any{v}
}

func present(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

func compare(op string, have, want any, exact bool) (bool, error) {
	switch op {
	case "gt", "lt", "ge", "le":
		return false, Errorf(InvalidFilter, "operator %s is not supported", op)
	}
	switch w := want.(type) {
	case nil:
		return op == "eq" && have == nil, nil
	case bool:
		h, ok := have.(bool)
		return ok && op == "eq" && h == w, nil
	case float64:
		h, ok := have.(float64)
		return ok && op == "eq" && h == w, nil
	case string:
		h, ok := have.(string)
		if !ok {
			return false, nil
		}
		if !exact {
			h, w = strings.ToLower(h), strings.ToLower(w)
		}
		switch op {
		case "eq":
			return h == w, nil
		case "co":
			return strings.Contains(h, w), nil
		case "sw":
			return strings.HasPrefix(h, w), nil
		case "ew":
			return strings.HasSuffix(h, w), nil
		}
	}
	return false, nil
}
