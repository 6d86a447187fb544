package plans

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Functions returns the functions a plan may call. baseDir resolves the
// relative paths given to file().
//
// timestamp() is fixed per run (now is taken once) so that every step of a
// plan sees the same value and a dry-run and its apply agree.
func Functions(baseDir string, now time.Time) map[string]function.Function {
	fs := map[string]function.Function{
		"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
		"max": stdlib.MaxFunc, "min": stdlib.MinFunc, "parseint": stdlib.ParseIntFunc,

		"chomp": stdlib.ChompFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
		"indent": stdlib.IndentFunc, "join": stdlib.JoinFunc, "lower": stdlib.LowerFunc,
		"upper": stdlib.UpperFunc, "regex": stdlib.RegexFunc, "regexall": stdlib.RegexAllFunc,
		"replace": stdlib.ReplaceFunc, "split": stdlib.SplitFunc, "strlen": stdlib.StrlenFunc,
		"substr": stdlib.SubstrFunc, "title": stdlib.TitleFunc, "trim": stdlib.TrimFunc,
		"trimprefix": stdlib.TrimPrefixFunc, "trimsuffix": stdlib.TrimSuffixFunc,
		"trimspace": stdlib.TrimSpaceFunc,

		"coalesce": stdlib.CoalesceFunc, "coalescelist": stdlib.CoalesceListFunc,
		"compact": stdlib.CompactFunc, "concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc,
		"distinct": stdlib.DistinctFunc, "element": stdlib.ElementFunc, "flatten": stdlib.FlattenFunc,
		"keys": stdlib.KeysFunc, "length": stdlib.LengthFunc, "lookup": stdlib.LookupFunc,
		"merge": stdlib.MergeFunc, "range": stdlib.RangeFunc, "reverse": stdlib.ReverseListFunc,
		"slice": stdlib.SliceFunc, "sort": stdlib.SortFunc, "values": stdlib.ValuesFunc,
		"zipmap": stdlib.ZipmapFunc, "chunklist": stdlib.ChunklistFunc,

		"jsonencode": stdlib.JSONEncodeFunc, "jsondecode": stdlib.JSONDecodeFunc,
		"formatdate": stdlib.FormatDateFunc, "timeadd": stdlib.TimeAddFunc,

		"try": tryfunc.TryFunc, "can": tryfunc.CanFunc,

		"tostring": makeToFunc(cty.String), "tonumber": makeToFunc(cty.Number),
		"tobool": makeToFunc(cty.Bool),

		"startswith": affixFunc(strings.HasPrefix, "Reports whether a string starts with a prefix."),
		"endswith":   affixFunc(strings.HasSuffix, "Reports whether a string ends with a suffix."),
		"env":        envFunc,
		"file":       fileFunc(baseDir),
		"timestamp":  timestampFunc(now),
		"semver":     semverFunc,
		"minor":      minorFunc,
		"next_minor": nextMinorFunc,
	}
	return fs
}

func makeToFunc(ty cty.Type) function.Function {
	return function.New(&function.Spec{
		Description: "Converts its argument to " + ty.FriendlyName() + ".",
		Params:      []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true}},
		Type:        function.StaticReturnType(ty),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			v, err := convert.Convert(args[0], ty)
			if err != nil {
				return cty.UnknownVal(ty), function.NewArgError(0, err)
			}
			return v, nil
		},
	})
}

var envFunc = function.New(&function.Spec{
	Description: "Returns the value of an environment variable of the machine running runbook, or \"\" when it is not set.",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(os.Getenv(args[0].AsString())), nil
	},
})

func fileFunc(baseDir string) function.Function {
	return function.New(&function.Spec{
		Description: "Reads a file, relative to the directory of the plan, as a UTF-8 string.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			if !filepath.IsAbs(p) {
				p = filepath.Join(baseDir, p)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return cty.UnknownVal(cty.String), function.NewArgError(0, err)
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

func timestampFunc(now time.Time) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the time the run started, in RFC 3339 format (UTC); the same value for every call in one run.",
		Type:        function.StaticReturnType(cty.String),
		Impl: func(_ []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(now.UTC().Format(time.RFC3339)), nil
		},
	})
}

var versionObject = cty.Object(map[string]cty.Type{
	"major": cty.Number, "minor": cty.Number, "patch": cty.Number,
	"pre": cty.String, "version": cty.String, "minor_version": cty.String,
})

func versionArg(args []cty.Value) (Version, error) {
	v, err := ParseVersion(args[0].AsString())
	if err != nil {
		return Version{}, function.NewArgError(0, err)
	}
	return v, nil
}

var semverFunc = function.New(&function.Spec{
	Description: "Parses a Kubernetes version (\"v1.28.3\") into {major, minor, patch, pre, version = \"1.28.3\", minor_version = \"1.28\"}.",
	Params:      []function.Parameter{{Name: "version", Type: cty.String}},
	Type:        function.StaticReturnType(versionObject),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v, err := versionArg(args)
		if err != nil {
			return cty.UnknownVal(versionObject), err
		}
		return cty.ObjectVal(map[string]cty.Value{
			"major": cty.NumberIntVal(int64(v.Major)), "minor": cty.NumberIntVal(int64(v.Minor)),
			"patch": cty.NumberIntVal(int64(v.Patch)), "pre": cty.StringVal(v.Pre),
			"version": cty.StringVal(v.String()), "minor_version": cty.StringVal(v.MinorString()),
		}), nil
	},
})

var minorFunc = function.New(&function.Spec{
	Description: "Returns the minor release of a version: minor(\"v1.28.3\") is \"1.28\".",
	Params:      []function.Parameter{{Name: "version", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v, err := versionArg(args)
		if err != nil {
			return cty.UnknownVal(cty.String), err
		}
		return cty.StringVal(v.MinorString()), nil
	},
})

var nextMinorFunc = function.New(&function.Spec{
	Description: "Returns the minor release after a version's: next_minor(\"1.27.6\") is \"1.28\".",
	Params:      []function.Parameter{{Name: "version", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v, err := versionArg(args)
		if err != nil {
			return cty.UnknownVal(cty.String), err
		}
		return cty.StringVal(fmt.Sprintf("%d.%d", v.Major, v.Minor+1)), nil
	},
})

func affixFunc(f func(s, affix string) bool, doc string) function.Function {
	return function.New(&function.Spec{
		Description: doc,
		Params:      []function.Parameter{{Name: "s", Type: cty.String}, {Name: "affix", Type: cty.String}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(f(args[0].AsString(), args[1].AsString())), nil
		},
	})
}
