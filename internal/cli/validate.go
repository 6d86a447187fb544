package cli

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/view"
	"github.com/spf13/cobra"
)

func newValidate(stdio *IO) *cobra.Command {
	var vf varFlags
	var output string
	cmd := &cobra.Command{
		Use:   "validate PLAN...",
		Short: "Check plan files without touching any cluster or node",
		Long: `Check plan files: syntax, blocks and arguments, step kinds, references,
types, durations, selectors and versions. Variables without a value are
treated as unknown, so a plan validates without its inputs. No cluster or
node is contacted.

Each PLAN is a file, or a directory whose .hcl files form one plan.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if output != "text" && output != "json" {
				return usageError("-o %q: validate writes text or json", output)
			}
			var all hcl.Diagnostics
			invalid := 0
			for _, f := range files {
				l := load(stdio, f, vf, true)
				if !l.diags.HasErrors() {
					l.diags = append(l.diags, engine.Validate(l.vals)...)
				}
				all = append(all, l.diags...)
				if output == "text" {
					l.writeDiags(stdio)
				}
				if l.diags.HasErrors() {
					invalid++
				} else if output == "text" {
					fmt.Fprintf(stdio.Out, "%s: valid, %d step(s).\n", f, len(l.plan.Steps()))
				}
			}
			if output == "json" {
				if err := view.WriteDiagsJSON(stdio.Out, all); err != nil {
					return err
				}
			}
			if invalid > 0 {
				return errQuiet(ExitError, fmt.Sprintf("%d invalid plan(s)", invalid))
			}
			return nil
		},
	}
	vf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
