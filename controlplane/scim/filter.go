package scim

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds on what the parser accepts: a filter or path longer, or nested
// deeper, is refused before it can cost much.
const (
	MaxFilterLen   = 4096
	MaxFilterDepth = 32
)

// Expr is a parsed filter (RFC 7644 section 3.4.2.2): an *AttrExpr,
// *LogExpr, *NotExpr or *ValuePathExpr.
type Expr interface {
	String() string
	expr()
}

// AttrPath names an attribute: an optional schema URI, the attribute and
// an optional sub-attribute ("name.givenName"). Names keep the client's
// case; comparisons ignore it.
type AttrPath struct {
	URI  string
	Name string
	Sub  string
}

func (p AttrPath) String() string {
	s := p.Name
	if p.URI != "" {
		s = p.URI + ":" + s
	}
	if p.Sub != "" {
		s += "." + p.Sub
	}
	return s
}

// Is reports whether the path is the attribute name (and sub-attribute sub,
// "" for none), in the core schema uri or with no URI.
func (p AttrPath) Is(uri, name, sub string) bool {
	return (p.URI == "" || strings.EqualFold(p.URI, uri)) && strings.EqualFold(p.Name, name) && strings.EqualFold(p.Sub, sub)
}

// AttrExpr compares an attribute: Op is one of eq ne co sw ew gt lt ge le
// (with Value a string, float64, bool or nil for null) or pr (no Value).
type AttrExpr struct {
	Path  AttrPath
	Op    string
	Value any
}

// LogExpr joins two filters with Op "and" or "or".
type LogExpr struct {
	Op          string
	Left, Right Expr
}

// NotExpr negates a filter.
type NotExpr struct{ X Expr }

// ValuePathExpr matches a multi-valued attribute having an element that
// Filter matches (attribute paths in Filter name the element's
// sub-attributes), e.g. emails[type eq "work"].
type ValuePathExpr struct {
	Path   AttrPath
	Filter Expr
}

func (*AttrExpr) expr()      {}
func (*LogExpr) expr()       {}
func (*NotExpr) expr()       {}
func (*ValuePathExpr) expr() {}

func (e *AttrExpr) String() string {
	if e.Op == "pr" {
		return e.Path.String() + " pr"
	}
	v, _ := json.Marshal(e.Value)
	return e.Path.String() + " " + e.Op + " " + string(v)
}
func (e *LogExpr) String() string {
	return "(" + e.Left.String() + " " + e.Op + " " + e.Right.String() + ")"
}
func (e *NotExpr) String() string { return "not (" + e.X.String() + ")" }
func (e *ValuePathExpr) String() string {
	return e.Path.String() + "[" + e.Filter.String() + "]"
}

var compareOps = map[string]bool{"eq": true, "ne": true, "co": true, "sw": true, "ew": true, "gt": true, "lt": true, "ge": true, "le": true}

// ParseFilter parses a filter. Keywords and operators are case-insensitive;
// string values are JSON strings (escapes decoded). Besides the RFC's
// grammar it accepts a sub-attribute after a value path followed by a
// comparison, as Entra ID sends: emails[type eq "work"].value eq "x" is
// read as emails[type eq "work" and value eq "x"].
func ParseFilter(s string) (Expr, error) {
	p, err := newParser(s)
	if err != nil {
		return nil, err
	}
	e, err := p.parseOr(0, false)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.errorf("unexpected %s", t)
	}
	return e, nil
}

// Path is a PATCH operation's path (RFC 7644 section 3.5.2): an attribute,
// or a multi-valued attribute's elements selected by Filter, optionally
// narrowed to a sub-attribute of them (Sub), as in
// emails[type eq "work"].value.
type Path struct {
	Attr   AttrPath
	Filter Expr
	Sub    string
}

func (p Path) String() string {
	if p.Filter == nil {
		return p.Attr.String()
	}
	s := p.Attr.String() + "[" + p.Filter.String() + "]"
	if p.Sub != "" {
		s += "." + p.Sub
	}
	return s
}

// ParsePath parses a PATCH path.
func ParsePath(s string) (Path, error) {
	p, err := newParser(s)
	if err != nil {
		return Path{}, pathError(err)
	}
	t := p.next()
	if t.kind != tokWord {
		return Path{}, pathError(p.errorf("expected an attribute path, got %s", t))
	}
	attr, err := p.attrPath(t)
	if err != nil {
		return Path{}, pathError(err)
	}
	path := Path{Attr: attr}
	if p.peek().kind == tokLBracket {
		if attr.Sub != "" {
			return Path{}, pathError(p.errorf("a value filter applies to an attribute, not to a sub-attribute (%s)", attr))
		}
		p.next()
		if path.Filter, err = p.parseOr(1, true); err != nil {
			return Path{}, pathError(err)
		}
		if t := p.next(); t.kind != tokRBracket {
			return Path{}, pathError(p.errorf("expected ], got %s", t))
		}
		if t := p.peek(); t.kind == tokWord && strings.HasPrefix(t.text, ".") {
			p.next()
			sub := t.text[1:]
			if !validName(sub) {
				return Path{}, pathError(p.errorf("invalid sub-attribute %q", sub))
			}
			path.Sub = sub
		}
	}
	if t := p.peek(); t.kind != tokEOF {
		return Path{}, pathError(p.errorf("unexpected %s", t))
	}
	return path, nil
}

func pathError(err error) error {
	if e, ok := err.(*Error); ok {
		return &Error{Status: e.Status, ScimType: InvalidPath, Detail: strings.Replace(e.Detail, "filter", "path", 1)}
	}
	return err
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokWord
	tokString
	tokNumber
	tokLParen
	tokRParen
	tokLBracket
	tokRBracket
)

type token struct {
	kind tokKind
	text string // a word or number as written
	str  string // a string's decoded value
	pos  int
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of filter"
	case tokString:
		return fmt.Sprintf("string %q", t.str)
	case tokLParen:
		return `"("`
	case tokRParen:
		return `")"`
	case tokLBracket:
		return `"["`
	case tokRBracket:
		return `"]"`
	}
	return fmt.Sprintf("%q", t.text)
}

type parser struct {
	toks []token
	i    int
}

func newParser(s string) (*parser, error) {
	if len(s) > MaxFilterLen {
		return nil, Errorf(InvalidFilter, "filter longer than %d bytes", MaxFilterLen)
	}
	if !utf8.ValidString(s) {
		return nil, Errorf(InvalidFilter, "filter is not valid UTF-8")
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	return &parser{toks: toks}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(format string, args ...any) error {
	return Errorf(InvalidFilter, "filter at offset %d: %s", p.peek().pos, fmt.Sprintf(format, args...))
}

func (p *parser) keyword(t token, kw string) bool {
	return t.kind == tokWord && strings.EqualFold(t.text, kw)
}

// parseOr parses FILTER (or valFilter when inValue: no nested value paths).
func (p *parser) parseOr(depth int, inValue bool) (Expr, error) {
	if depth > MaxFilterDepth {
		return nil, p.errorf("nested deeper than %d", MaxFilterDepth)
	}
	left, err := p.parseAnd(depth, inValue)
	if err != nil {
		return nil, err
	}
	for p.keyword(p.peek(), "or") {
		p.next()
		right, err := p.parseAnd(depth, inValue)
		if err != nil {
			return nil, err
		}
		left = &LogExpr{Op: "or", Left: left, Right: right}
	}
	return left, nil
}

func (p *parser) parseAnd(depth int, inValue bool) (Expr, error) {
	left, err := p.parseUnary(depth, inValue)
	if err != nil {
		return nil, err
	}
	for p.keyword(p.peek(), "and") {
		p.next()
		right, err := p.parseUnary(depth, inValue)
		if err != nil {
			return nil, err
		}
		left = &LogExpr{Op: "and", Left: left, Right: right}
	}
	return left, nil
}

func (p *parser) parseUnary(depth int, inValue bool) (Expr, error) {
	t := p.peek()
	switch {
	case p.keyword(t, "not"):
		p.next()
		if t := p.next(); t.kind != tokLParen {
			return nil, p.errorf(`expected "(" after not, got %s`, t)
		}
		x, err := p.parseOr(depth+1, inValue)
		if err != nil {
			return nil, err
		}
		if t := p.next(); t.kind != tokRParen {
			return nil, p.errorf(`expected ")", got %s`, t)
		}
		return &NotExpr{X: x}, nil
	case t.kind == tokLParen:
		p.next()
		x, err := p.parseOr(depth+1, inValue)
		if err != nil {
			return nil, err
		}
		if t := p.next(); t.kind != tokRParen {
			return nil, p.errorf(`expected ")", got %s`, t)
		}
		return x, nil
	case t.kind == tokWord:
		return p.parseAttr(depth, inValue)
	}
	return nil, p.errorf("expected an attribute, not or (, got %s", t)
}

func (p *parser) parseAttr(depth int, inValue bool) (Expr, error) {
	path, err := p.attrPath(p.next())
	if err != nil {
		return nil, err
	}
	if p.peek().kind == tokLBracket {
		if inValue {
			return nil, p.errorf("a value filter cannot hold another value filter")
		}
		if path.Sub != "" {
			return nil, p.errorf("a value filter applies to an attribute, not to a sub-attribute (%s)", path)
		}
		p.next()
		f, err := p.parseOr(depth+1, true)
		if err != nil {
			return nil, err
		}
		if t := p.next(); t.kind != tokRBracket {
			return nil, p.errorf(`expected "]", got %s`, t)
		}
		vp := &ValuePathExpr{Path: path, Filter: f}
		// Entra ID's form: emails[type eq "work"].value eq "x".
		if t := p.peek(); t.kind == tokWord && strings.HasPrefix(t.text, ".") {
			p.next()
			sub := t.text[1:]
			if !validName(sub) {
				return nil, p.errorf("invalid sub-attribute %q", sub)
			}
			cmp, err := p.comparison(AttrPath{Name: sub})
			if err != nil {
				return nil, err
			}
			vp.Filter = &LogExpr{Op: "and", Left: f, Right: cmp}
		}
		return vp, nil
	}
	return p.comparison(path)
}

// comparison parses the operator and value after an attribute path.
func (p *parser) comparison(path AttrPath) (Expr, error) {
	op := p.next()
	if op.kind != tokWord {
		return nil, p.errorf("expected an operator after %s, got %s", path, op)
	}
	name := strings.ToLower(op.text)
	if name == "pr" {
		return &AttrExpr{Path: path, Op: "pr"}, nil
	}
	if !compareOps[name] {
		return nil, p.errorf("unknown operator %q", op.text)
	}
	v := p.next()
	var value any
	switch v.kind {
	case tokString:
		value = v.str
	case tokNumber:
		var f float64
		if err := json.Unmarshal([]byte(v.text), &f); err != nil {
			return nil, p.errorf("invalid number %q", v.text)
		}
		value = f
	case tokWord:
		switch strings.ToLower(v.text) {
		case "true":
			value = true
		case "false":
			value = false
		case "null":
			value = nil
		default:
			return nil, p.errorf("expected a value (a string in double quotes, a number, true, false or null), got %s", v)
		}
	default:
		return nil, p.errorf("expected a value after %s, got %s", op.text, v)
	}
	return &AttrExpr{Path: path, Op: name, Value: value}, nil
}

// attrPath reads [URI ":"] ATTRNAME ["." subAttr] from a word.
func (p *parser) attrPath(t token) (AttrPath, error) {
	if t.kind != tokWord {
		return AttrPath{}, p.errorf("expected an attribute path, got %s", t)
	}
	var ap AttrPath
	rest := t.text
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		ap.URI, rest = rest[:i], rest[i+1:]
		if !strings.HasPrefix(strings.ToLower(ap.URI), "urn:") {
			return AttrPath{}, p.errorf("invalid schema URI %q", ap.URI)
		}
	}
	name, sub, hasSub := strings.Cut(rest, ".")
	if !validName(name) || (hasSub && !validName(sub)) {
		return AttrPath{}, p.errorf("invalid attribute path %q", t.text)
	}
	ap.Name, ap.Sub = name, sub
	return ap, nil
}

// validName is ATTRNAME: ALPHA *(nameChar), or "$ref".
func validName(s string) bool {
	if s == "$ref" {
		return true
	}
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func isWordByte(c byte) bool {
	return isAlpha(c) || (c >= '0' && c <= '9') || strings.IndexByte("-_.:$", c) >= 0
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(':
			toks = append(toks, token{kind: tokLParen, pos: i})
			i++
		case c == ')':
			toks = append(toks, token{kind: tokRParen, pos: i})
			i++
		case c == '[':
			toks = append(toks, token{kind: tokLBracket, pos: i})
			i++
		case c == ']':
			toks = append(toks, token{kind: tokRBracket, pos: i})
			i++
		case c == '"':
			end, err := stringEnd(s, i)
			if err != nil {
				return nil, err
			}
			var v string
			if err := json.Unmarshal([]byte(s[i:end]), &v); err != nil {
				return nil, Errorf(InvalidFilter, "filter at offset %d: invalid string: %v", i, err)
			}
			toks = append(toks, token{kind: tokString, str: v, pos: i})
			i = end
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(s) && strings.IndexByte("0123456789.eE+-", s[j]) >= 0 {
				j++
			}
			if !json.Valid([]byte(s[i:j])) {
				// Not a number: a word such as an attribute can't start with
				// a digit or dash either.
				return nil, Errorf(InvalidFilter, "filter at offset %d: invalid number %q", i, s[i:j])
			}
			toks = append(toks, token{kind: tokNumber, text: s[i:j], pos: i})
			i = j
		case isWordByte(c):
			j := i + 1
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{kind: tokWord, text: s[i:j], pos: i})
			i = j
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			return nil, Errorf(InvalidFilter, "filter at offset %d: unexpected character %q", i, r)
		}
	}
	return append(toks, token{kind: tokEOF, pos: len(s)}), nil
}

// stringEnd returns the offset just past the JSON string starting at i.
func stringEnd(s string, i int) (int, error) {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, Errorf(InvalidFilter, "filter at offset %d: unterminated string", i)
}
