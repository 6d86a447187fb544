package plans_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/all"
	"github.com/zclconf/go-cty/cty"
)

func write(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVariablePrecedence(t *testing.T) {
	src := `variable "v" {
  type    = string
  default = "default"
}
variable "n" {
  type    = list(number)
  default = []
}`
	p, diags := plans.Parse([]string{write(t, "p.hcl", src)}, all.Registry())
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	vf := write(t, "vars.hcl", "v = \"file\"\nn = [1, 2]\n")
	vfJSON := write(t, "vars.json", `{"v": "json"}`)
	tests := []struct {
		name  string
		in    plans.Inputs
		want  string
		wantN int
	}{
		{"default", plans.Inputs{}, "default", 0},
		{"env", plans.Inputs{Environ: []string{"RUNBOOK_VAR_v=env"}}, "env", 0},
		{"file beats env", plans.Inputs{Environ: []string{"RUNBOOK_VAR_v=env"}, VarFiles: []string{vf}}, "file", 2},
		{"later file wins", plans.Inputs{VarFiles: []string{vf, vfJSON}}, "json", 2},
		{"flag beats file", plans.Inputs{VarFiles: []string{vf}, Vars: []string{"v=flag"}}, "flag", 2},
		{"last flag wins", plans.Inputs{Vars: []string{"v=a", "v=b", "n=[3]"}}, "b", 1},
		{"flag keeps = in value", plans.Inputs{Vars: []string{"v=a=b"}}, "a=b", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, diags := plans.Evaluate(p, tt.in)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if got := vals.Vars["v"].AsString(); got != tt.want {
				t.Errorf("v = %q, want %q", got, tt.want)
			}
			if got := vals.Vars["n"].LengthInt(); got != tt.wantN {
				t.Errorf("len(n) = %d, want %d", got, tt.wantN)
			}
		})
	}
}

func TestVariableErrors(t *testing.T) {
	src := `variable "count" { type = number }`
	p, _ := plans.Parse([]string{write(t, "p.hcl", src)}, all.Registry())
	tests := []struct {
		name string
		in   plans.Inputs
		want string
	}{
		{"missing", plans.Inputs{}, "No value for required variable"},
		{"wrong type", plans.Inputs{Vars: []string{"count=abc"}}, "Variables not allowed"},
		{"undeclared", plans.Inputs{Vars: []string{"count=1", "cuont=2"}}, `Did you mean "count"`},
		{"not name=value", plans.Inputs{Vars: []string{"count"}}, "not of the form NAME=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := plans.Evaluate(p, tt.in)
			if !diags.HasErrors() || !strings.Contains(diags.Error(), tt.want) {
				t.Fatalf("diags = %v, want an error containing %q", diags, tt.want)
			}
		})
	}
	// Partial evaluation (validate) leaves it unknown instead.
	vals, diags := plans.Evaluate(p, plans.Inputs{Partial: true})
	if diags.HasErrors() || vals.Vars["count"].IsKnown() {
		t.Fatalf("partial: diags %v, value %#v", diags, vals.Vars["count"])
	}
}

func TestBatches(t *testing.T) {
	tests := []struct {
		batch string
		n     int
		want  []int
	}{
		{"1", 3, []int{1, 1, 1}},
		{"2", 5, []int{2, 2, 1}},
		{`"20%"`, 10, []int{2, 2, 2, 2, 2}},
		{`"20%"`, 3, []int{1, 1, 1}},
		{`"50%"`, 3, []int{2, 1}},
		{`[1, 2, "50%"]`, 10, []int{1, 2, 5, 2}},
		{`[1, 2]`, 6, []int{1, 2, 2, 1}},
		{`"100%"`, 4, []int{4}},
	}
	for _, tt := range tests {
		t.Run(tt.batch, func(t *testing.T) {
			src := "inventory \"all\" { nodes = [\"a\"] }\nphase \"p\" {\n nodes = inventory.all\n rolling { batch = " + tt.batch + " }\n step \"cordon\" \"c\" {}\n}\n"
			p, diags := plans.Parse([]string{write(t, "p.hcl", src)}, all.Registry())
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			vals, _ := plans.Evaluate(p, plans.Inputs{})
			got, diags := vals.Batches(p.Items[0].(*plans.Phase), tt.n)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("batches = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("batches = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestNaturalLess(t *testing.T) {
	names := []plans.Node{{Name: "worker-10"}, {Name: "cp-1"}, {Name: "worker-2"}, {Name: "worker-1"}, {Name: "worker-02b"}}
	plans.SortNodes(names)
	var got []string
	for _, n := range names {
		got = append(got, n.Name)
	}
	if want := "cp-1 worker-1 worker-2 worker-02b worker-10"; strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

func TestVersionFunctions(t *testing.T) {
	fs := plans.Functions(".", plans.Inputs{}.Now)
	tests := []struct {
		fn, in, want string
		err          bool
	}{
		{"minor", "v1.28.3", "1.28", false},
		{"minor", "1.28", "1.28", false},
		{"next_minor", "1.27.6", "1.28", false},
		{"next_minor", "1.28.0-rc.1", "1.29", false},
		{"minor", "1.28.x", "", true},
		{"minor", "1.28.0-1.1x-", "", false},
		{"minor", "01.28", "", true},
	}
	for _, tt := range tests {
		got, err := fs[tt.fn].Call([]cty.Value{cty.StringVal(tt.in)})
		if (err != nil) != tt.err {
			t.Errorf("%s(%q): err = %v, want error %v", tt.fn, tt.in, err, tt.err)
			continue
		}
		if err == nil && tt.want != "" && got.AsString() != tt.want {
			t.Errorf("%s(%q) = %q, want %q", tt.fn, tt.in, got.AsString(), tt.want)
		}
	}
	v, err := fs["semver"].Call([]cty.Value{cty.StringVal("v1.28.3")})
	if err != nil || v.GetAttr("version").AsString() != "1.28.3" || v.GetAttr("minor_version").AsString() != "1.28" {
		t.Errorf("semver = %#v, %v", v, err)
	}
}

func TestDrillSettings(t *testing.T) {
	src := `variable "t" { type = string }
drill {
  non_production = true
  timeout        = var.t
  expect_ready   = ["app/deployment/web"]
}`
	p, diags := plans.Parse([]string{write(t, "p.hcl", src)}, all.Registry())
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct {
		name    string
		in      plans.Inputs
		timeout time.Duration
		err     string
	}{
		{"given", plans.Inputs{Vars: []string{"t=90s"}}, 90 * time.Second, ""},
		{"unknown in validate: the default until known", plans.Inputs{Partial: true}, plans.DefaultDrillTimeout, ""},
		{"not a duration", plans.Inputs{Vars: []string{"t=soon"}}, 0, `timeout: "soon" is not a positive duration`},
		{"zero", plans.Inputs{Vars: []string{"t=0s"}}, 0, `timeout: "0s" is not a positive duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, diags := plans.Evaluate(p, tt.in)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			s, diags := vals.Drill()
			if tt.err != "" {
				if !diags.HasErrors() || !strings.Contains(diags.Error(), tt.err) {
					t.Fatalf("diags %v, want %q", diags, tt.err)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if !s.NonProduction || s.Timeout != tt.timeout || len(s.ExpectReady) != 1 {
				t.Errorf("settings %+v", s)
			}
		})
	}
}
