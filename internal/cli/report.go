package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/runbookhq/runbook/internal/journal"
	"github.com/runbookhq/runbook/internal/report"
	"github.com/spf13/cobra"
)

func newReport(stdio *IO) *cobra.Command {
	var output, out string
	cmd := &cobra.Command{
		Use:   "report RUN",
		Short: "Write a run's report (HTML timeline, markdown or JSON) from its journal",
		Long: `Write the report of a run from its journal. RUN is a run id (looked up in
.runbook/*/ under the current directory) or a journal file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := findJournal(args[0])
			if err != nil {
				return &exitError{code: ExitError, err: err}
			}
			recs, err := journal.Read(path)
			if err != nil {
				return &exitError{code: ExitError, err: err}
			}
			r := report.Build(recs)
			w := stdio.Out
			if out != "" {
				f, err := os.Create(out)
				if err != nil {
					return &exitError{code: ExitError, err: err}
				}
				defer f.Close()
				w = f
			}
			switch output {
			case "html":
				err = r.HTML(w)
			case "markdown":
				r.Markdown(w)
			case "json":
				err = r.JSON(w)
			default:
				return usageError("-o %q: report writes html, markdown or json", output)
			}
			if err != nil {
				return &exitError{code: ExitError, err: err}
			}
			if out != "" {
				fmt.Fprintf(stdio.Err, "Wrote %s (run %s, %s).\n", out, r.RunID, r.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "html", "format: html, markdown or json")
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of standard output")
	return cmd
}

// findJournal resolves a run id or a journal path.
func findJournal(arg string) (string, error) {
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		return arg, nil
	}
	if strings.ContainsAny(arg, "/*?[") {
		return "", fmt.Errorf("%s: no such journal", arg)
	}
	m, _ := filepath.Glob(filepath.Join(".runbook", "*", arg+".jsonl"))
	switch len(m) {
	case 0:
		return "", fmt.Errorf("no journal for run %s under .runbook/ here; give the journal file instead", arg)
	case 1:
		return m[0], nil
	}
	return "", fmt.Errorf("run %s has several journals: %s", arg, strings.Join(m, ", "))
}
