package scim

import (
	"encoding/json"
	"strings"
)

// MaxPatchOps bounds the operations of one PATCH request.
const MaxPatchOps = 1000

// PatchOp is one PATCH operation (RFC 7644 section 3.5.2). Op is lower-cased
// ("add", "remove", "replace"): clients capitalise it (Entra ID sends
// "Replace").
type PatchOp struct {
	Op string
	// Path is nil when the operation has none (its value is then an object
	// of attributes, as Okta sends {"op":"replace","value":{"active":false}}).
	Path  *Path
	Value any
	// HasValue says whether the operation carried a value at all.
	HasValue bool
}

// DecodePatch reads a PatchOp request body.
func DecodePatch(body []byte) ([]PatchOp, error) {
	obj, err := DecodeObject(body)
	if err != nil {
		return nil, err
	}
	var schemas, rawOps any
	for k, v := range obj {
		switch strings.ToLower(k) {
		case "schemas":
			schemas = v
		case "operations":
			rawOps = v
		}
	}
	if schemas != nil {
		list, ok := schemas.([]any)
		found := false
		for _, s := range list {
			if str, _ := s.(string); strings.EqualFold(str, PatchOpSchema) {
				found = true
			}
		}
		if !ok || !found {
			return nil, Errorf(InvalidSyntax, "schemas: must name %s", PatchOpSchema)
		}
	}
	list, ok := rawOps.([]any)
	if !ok || len(list) == 0 {
		return nil, Errorf(InvalidSyntax, "Operations: a non-empty list of operations is required")
	}
	if len(list) > MaxPatchOps {
		return nil, Errorf(InvalidSyntax, "Operations: at most %d", MaxPatchOps)
	}
	ops := make([]PatchOp, 0, len(list))
	for i, raw := range list {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, Errorf(InvalidSyntax, "Operations[%d]: an object", i)
		}
		var op PatchOp
		var rawPath any
		for k, v := range m {
			switch strings.ToLower(k) {
			case "op":
				s, _ := v.(string)
				op.Op = strings.ToLower(s)
			case "path":
				rawPath = v
			case "value":
				op.Value, op.HasValue = v, true
			}
		}
		switch op.Op {
		case "add", "remove", "replace":
		default:
			return nil, Errorf(InvalidSyntax, "Operations[%d].op: add, remove or replace", i)
		}
		if rawPath != nil {
			s, ok := rawPath.(string)
			if !ok {
				return nil, Errorf(InvalidPath, "Operations[%d].path: a string", i)
			}
			if s = strings.TrimSpace(s); s != "" {
				p, err := ParsePath(s)
				if err != nil {
					return nil, err
				}
				op.Path = &p
			}
		}
		switch {
		case op.Path == nil && op.Op == "remove":
			return nil, Errorf(NoTarget, "Operations[%d]: remove needs a path", i)
		case op.Path == nil:
			if _, ok := op.Value.(map[string]any); !ok {
				return nil, Errorf(InvalidValue, "Operations[%d]: without a path, the value must be an object of attributes", i)
			}
		case op.Op != "remove" && !op.HasValue:
			return nil, Errorf(InvalidValue, "Operations[%d]: %s needs a value", i, op.Op)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// ApplyPatch applies the operations, in order, to a resource's attributes
// (as stored: core attributes at the top, extensions under their URN).
// coreSchema is the resource's core schema URN, which a path may name.
// The result must be normalized again (NormalizeUser, NormalizeGroup).
func ApplyPatch(attrs map[string]any, ops []PatchOp, coreSchema string) error {
	for _, op := range ops {
		if err := applyOp(attrs, op, coreSchema); err != nil {
			return err
		}
	}
	return nil
}

func applyOp(attrs map[string]any, op PatchOp, coreSchema string) error {
	if op.Path == nil {
		for k, v := range op.Value.(map[string]any) {
			target, name := attrs, k
			if i := strings.LastIndexByte(k, ':'); i >= 0 {
				uri, last := k[:i], k[i+1:]
				_, isObj := v.(map[string]any)
				switch {
				case strings.EqualFold(uri, coreSchema):
					name = last // a core attribute by its full path
				case isObj && last != "" && last[0] >= 'A' && last[0] <= 'Z':
					// A schema URN ("...:2.0:User"): an extension's attributes.
				default:
					target, name = extension(attrs, uri), last
				}
			}
			if err := setAttr(target, name, v, op.Op == "add"); err != nil {
				return err
			}
		}
		return nil
	}
	p := *op.Path
	target := attrs
	if p.Attr.URI != "" && !strings.EqualFold(p.Attr.URI, coreSchema) {
		target = extension(attrs, p.Attr.URI)
	}
	key := findKey(target, p.Attr.Name)
	if p.Filter == nil {
		if p.Attr.Sub == "" {
			switch op.Op {
			case "remove":
				if op.HasValue && isList(target[key]) {
					return removeValues(target, key, op.Value)
				}
				delete(target, key)
				return nil
			default:
				return setAttr(target, p.Attr.Name, op.Value, op.Op == "add")
			}
		}
		complexV, _ := target[key].(map[string]any)
		if complexV == nil {
			if _, isList := target[key].([]any); isList {
				return Errorf(InvalidPath, "%s is multi-valued: select its values with a filter, e.g. %s[type eq \"work\"].%s", p.Attr.Name, p.Attr.Name, p.Attr.Sub)
			}
			if op.Op == "remove" {
				return nil
			}
			complexV = map[string]any{}
			target[key] = complexV
		}
		if op.Op == "remove" {
			delete(complexV, findKey(complexV, p.Attr.Sub))
			return nil
		}
		return setAttr(complexV, p.Attr.Sub, op.Value, false)
	}

	// A value path: the elements of a multi-valued attribute the filter selects.
	list, _ := target[key].([]any)
	if target[key] != nil && list == nil {
		return Errorf(InvalidPath, "%s is not multi-valued", p.Attr.Name)
	}
	var kept []any
	matched := 0
	for _, el := range list {
		obj, ok := el.(map[string]any)
		if !ok {
			kept = append(kept, el)
			continue
		}
		m, err := Match(p.Filter, obj)
		if err != nil {
			return err
		}
		if !m {
			kept = append(kept, el)
			continue
		}
		matched++
		switch {
		case op.Op == "remove" && p.Sub == "":
			continue // the element goes
		case op.Op == "remove":
			delete(obj, findKey(obj, p.Sub))
		case p.Sub != "":
			obj[subName(p.Sub)] = op.Value
		default:
			v, ok := op.Value.(map[string]any)
			if !ok {
				return Errorf(InvalidValue, "%s: the value must be an object", op.Path)
			}
			for k, sv := range v {
				obj[subName(k)] = sv
			}
		}
		kept = append(kept, obj)
	}
	if matched == 0 && op.Op != "remove" {
		// Nothing to change: make the element the filter describes, as
		// Entra ID expects for {"op":"Add","path":"emails[type eq \"work\"].value"}.
		el, ok := elementFor(p.Filter)
		if !ok {
			return Errorf(NoTarget, "%s: no value matches the filter", op.Path)
		}
		if p.Sub != "" {
			el[subName(p.Sub)] = op.Value
		} else if v, ok := op.Value.(map[string]any); ok {
			for k, sv := range v {
				el[subName(k)] = sv
			}
		} else {
			return Errorf(InvalidValue, "%s: the value must be an object", op.Path)
		}
		kept = append(kept, el)
	}
	if kept == nil {
		kept = []any{}
	}
	target[key] = kept
	return nil
}

// setAttr sets (replace) or adds to (add) an attribute. Adding to a
// multi-valued attribute appends; adding to a complex one merges.
func setAttr(target map[string]any, name string, v any, add bool) error {
	key := findKey(target, name)
	if v == nil {
		delete(target, key)
		return nil
	}
	if add {
		switch cur := target[key].(type) {
		case []any:
			if more, ok := v.([]any); ok {
				target[key] = append(cur, more...)
			} else {
				target[key] = append(cur, v)
			}
			return nil
		case map[string]any:
			if more, ok := v.(map[string]any); ok {
				for k, sv := range more {
					cur[findKey(cur, k)] = sv
				}
				return nil
			}
		}
	}
	target[key] = v
	return nil
}

// removeValues takes out of a multi-valued attribute the elements whose
// "value" is one of v's, as Entra ID removes group members:
// {"op":"Remove","path":"members","value":[{"value":"id"}]}.
func removeValues(target map[string]any, key string, v any) error {
	drop := map[string]bool{}
	for _, el := range elements(v) {
		obj, ok := el.(map[string]any)
		if !ok {
			return Errorf(InvalidValue, "%s: values to remove are objects with a value", key)
		}
		s, ok := lookup(obj, "value").(string)
		if !ok {
			return Errorf(InvalidValue, "%s: values to remove are objects with a value", key)
		}
		drop[s] = true
	}
	kept := []any{}
	for _, el := range target[key].([]any) {
		if obj, ok := el.(map[string]any); ok {
			if s, _ := lookup(obj, "value").(string); drop[s] {
				continue
			}
		}
		kept = append(kept, el)
	}
	target[key] = kept
	return nil
}

// elementFor builds the element a filter of eq comparisons joined by and
// describes; ok is false for any other filter.
func elementFor(f Expr) (map[string]any, bool) {
	el := map[string]any{}
	var walk func(Expr) bool
	walk = func(e Expr) bool {
		switch e := e.(type) {
		case *LogExpr:
			return e.Op == "and" && walk(e.Left) && walk(e.Right)
		case *AttrExpr:
			if e.Op != "eq" || e.Path.Sub != "" || e.Path.URI != "" {
				return false
			}
			el[subName(e.Path.Name)] = e.Value
			return true
		}
		return false
	}
	return el, walk(f)
}

// extension returns the object of an extension's attributes, creating it.
func extension(attrs map[string]any, uri string) map[string]any {
	key := findKey(attrs, uri)
	ext, _ := attrs[key].(map[string]any)
	if ext == nil {
		ext = map[string]any{}
		attrs[key] = ext
	}
	return ext
}

func isList(v any) bool {
	_, ok := v.([]any)
	return ok
}

// findKey returns the key of obj that names the attribute, ignoring case;
// name itself (in its canonical spelling if core) when there is none.
func findKey(obj map[string]any, name string) string {
	if _, ok := obj[name]; ok {
		return name
	}
	for k := range obj {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	if c, ok := userAttrs[strings.ToLower(name)]; ok {
		return c
	}
	if c, ok := groupAttrs[strings.ToLower(name)]; ok {
		return c
	}
	return name
}

func subName(name string) string {
	if c, ok := subAttrs[strings.ToLower(name)]; ok {
		return c
	}
	return name
}

// Clone deep-copies a resource's attributes (through JSON), so a PATCH can
// be applied to a copy and thrown away if it fails.
func Clone(attrs json.RawMessage) (map[string]any, error) {
	m := map[string]any{}
	if len(attrs) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(attrs, &m); err != nil {
		return nil, err
	}
	return m, nil
}
