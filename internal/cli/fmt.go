package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/runbookhq/runbook/internal/view"
	"github.com/spf13/cobra"
)

func newFmt(stdio *IO) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "fmt [FILE or DIR...]",
		Short: "Rewrite plan files in the canonical format",
		Long:  "Rewrite .hcl plan files in the canonical format (as terraform fmt does). With no argument, the .hcl files of the current directory. --check changes nothing and exits 1 when a file needs formatting.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			var files []string
			for _, a := range args {
				st, err := os.Stat(a)
				if err != nil {
					return &exitError{code: ExitError, err: err}
				}
				if st.IsDir() {
					m, _ := filepath.Glob(filepath.Join(a, "*.hcl"))
					files = append(files, m...)
				} else {
					files = append(files, a)
				}
			}
			sort.Strings(files)
			unformatted := 0
			for _, f := range files {
				src, err := os.ReadFile(f)
				if err != nil {
					return &exitError{code: ExitError, err: err}
				}
				// Refuse to rewrite what does not parse: formatting a broken
				// file could move the error.
				if _, diags := hclsyntax.ParseConfig(src, f, hcl.InitialPos); diags.HasErrors() {
					view.WriteDiags(stdio.Err, nil, diags, false)
					return errQuiet(ExitError, "syntax error")
				}
				out := hclwrite.Format(src)
				if bytes.Equal(src, out) {
					continue
				}
				unformatted++
				fmt.Fprintln(stdio.Out, f)
				if !check {
					if err := os.WriteFile(f, out, 0o644); err != nil {
						return &exitError{code: ExitError, err: err}
					}
				}
			}
			if check && unformatted > 0 {
				return errQuiet(ExitError, "files need formatting")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "change nothing; exit 1 if any file needs formatting")
	return cmd
}
