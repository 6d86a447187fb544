package engine

import (
	"time"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// UnknownText is how a value only known after apply is shown.
const UnknownText = "(known after apply)"

// Args reads a step's decoded arguments. Accessors return the zero value for
// null arguments; an unknown argument reads as UnknownText (strings) or the
// zero value, and Known tells them apart.
type Args struct{ V cty.Value }

func (a Args) get(name string) cty.Value {
	if a.V == cty.NilVal || a.V.IsNull() || !a.V.Type().IsObjectType() || !a.V.Type().HasAttribute(name) {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	return a.V.GetAttr(name)
}

// Value is the raw argument.
func (a Args) Value(name string) cty.Value { return a.get(name) }

// Known reports whether the argument is wholly known.
func (a Args) Known(name string) bool { return a.get(name).IsWhollyKnown() }

// Set reports whether the argument is known and not null.
func (a Args) Set(name string) bool {
	v := a.get(name)
	return v.IsKnown() && !v.IsNull()
}

// String returns a string argument.
func (a Args) String(name string) string {
	v := a.get(name)
	if !v.IsKnown() {
		return UnknownText
	}
	if v.IsNull() {
		return ""
	}
	v, err := convert.Convert(v, cty.String)
	if err != nil {
		return ""
	}
	return v.AsString()
}

// Bool returns a bool argument.
func (a Args) Bool(name string) bool {
	v := a.get(name)
	if !v.IsKnown() || v.IsNull() || v.Type() != cty.Bool {
		return false
	}
	return v.True()
}

// Int returns a number argument as an int.
func (a Args) Int(name string) int {
	v := a.get(name)
	if !v.IsKnown() || v.IsNull() || v.Type() != cty.Number {
		return 0
	}
	i, _ := v.AsBigFloat().Int64()
	return int(i)
}

// Duration returns a duration argument (validated by the schema's format).
func (a Args) Duration(name string) time.Duration {
	s := a.String(name)
	if s == "" || s == UnknownText {
		return 0
	}
	d, _ := time.ParseDuration(s)
	return d
}

// Strings returns a list of strings; unknown elements read as UnknownText.
func (a Args) Strings(name string) []string {
	v := a.get(name)
	if !v.IsKnown() {
		return []string{UnknownText}
	}
	if v.IsNull() || !v.CanIterateElements() {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		switch {
		case !e.IsKnown():
			out = append(out, UnknownText)
		case e.IsNull():
		default:
			if s, err := convert.Convert(e, cty.String); err == nil {
				out = append(out, s.AsString())
			}
		}
	}
	return out
}

// StringMap returns a map of strings; unknown values read as UnknownText.
func (a Args) StringMap(name string) map[string]string {
	v := a.get(name)
	if !v.IsKnown() || v.IsNull() || !v.CanIterateElements() {
		return nil
	}
	out := map[string]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		switch {
		case !e.IsKnown():
			out[k.AsString()] = UnknownText
		case e.IsNull():
		default:
			if s, err := convert.Convert(e, cty.String); err == nil {
				out[k.AsString()] = s.AsString()
			}
		}
	}
	return out
}
