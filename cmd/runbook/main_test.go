package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/runbookhq/runbook/internal/cli"
	"github.com/runbookhq/runbook/internal/labtest"
)

// TestMain lets testscript run the real binary's main as "runbook".
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"runbook": func() {
			os.Exit(cli.Main(os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
		},
	})
}

// TestScripts runs testdata/scripts: the CLI as a user runs it.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "../../testdata/scripts",
		Setup: func(env *testscript.Env) error {
			// The examples are plans users run; scripts reach them here.
			env.Setenv("EXAMPLES", mustAbs("../../examples"))
			env.Setenv("NO_COLOR", "1")
			return nil
		},
	})
}

// TestLabScripts runs testdata/scripts/lab against real labs: each script
// starts its own with `lab up [SCENARIO]`, which sets $KUBECONFIG.
func TestLabScripts(t *testing.T) {
	labtest.Bin(t) // skips in -short mode, fails when the lab is not built
	testscript.Run(t, testscript.Params{
		Dir: "../../testdata/scripts/lab",
		Setup: func(env *testscript.Env) error {
			env.Setenv("EXAMPLES", mustAbs("../../examples"))
			env.Setenv("NO_COLOR", "1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"lab": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 1 || args[0] != "up" {
					ts.Fatalf("usage: lab up [scenario [workers]]")
				}
				o := labtest.Options{}
				if len(args) > 1 {
					o.Scenario = args[1]
				}
				if len(args) > 2 {
					if _, err := fmt.Sscan(args[2], &o.Workers); err != nil {
						ts.Fatalf("workers: %v", err)
					}
				}
				l := labtest.Up(scriptTB{ts}, o)
				ts.Setenv("KUBECONFIG", l.Kubeconfig)
				ts.Setenv("LABDIR", l.Dir)
				ts.Setenv("LABBIN", labtest.Bin(t))
			},
		},
	})
}

// scriptTB lets a script own its lab: it stops when the script ends (not
// when every script has), and a failure to start it fails that script.
// Whether the script failed is not known to its commands, so the lab's
// logs are always kept.
type scriptTB struct{ ts *testscript.TestScript }

func (s scriptTB) Helper()                           {}
func (s scriptTB) Fatalf(format string, args ...any) { s.ts.Fatalf(format, args...) }
func (s scriptTB) Logf(format string, args ...any)   { s.ts.Logf(format, args...) }
func (s scriptTB) Cleanup(f func())                  { s.ts.Defer(f) }
func (s scriptTB) Failed() bool                      { return true }

func mustAbs(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return wd + "/" + p
}
