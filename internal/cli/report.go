package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/runbookhq/runbook/internal/journal"
	"github.com/runbookhq/runbook/internal/journal/clusterstore"
	"github.com/runbookhq/runbook/internal/kube"
	"github.com/runbookhq/runbook/internal/report"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
)

func newReport(stdio *IO) *cobra.Command {
	var output, out string
	var cl clusterLookup
	cmd := &cobra.Command{
		Use:   "report RUN",
		Short: "Write a run's report (HTML timeline, markdown or JSON) from its journal",
		Long: `Write the report of a run from its journal. RUN is a run id (looked up in
.runbook/*/ under the current directory, then in the cluster's journals, as
journal { backend = "cluster" } keeps them) or a journal file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			recs, err := readRun(cmd.Context(), args[0], cl)
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
	cmd.Flags().StringVar(&cl.kubeconfig, "kubeconfig", "", "kubeconfig file, for a run found in the cluster (default: as kubectl)")
	cmd.Flags().StringVar(&cl.context, "context", "", "kubeconfig context")
	cmd.Flags().StringVar(&cl.namespace, "namespace", clusterstore.DefaultNamespace, "namespace of the cluster's journals")
	return cmd
}

// clusterLookup is where report looks for a run not found here.
type clusterLookup struct{ kubeconfig, context, namespace string }

// readRun reads a run's journal: a file, a run id under .runbook/ here, or
// a run id kept in the cluster.
func readRun(ctx context.Context, arg string, cl clusterLookup) ([]journal.Record, error) {
	path, err := findJournal(arg)
	if err == nil {
		return journal.Read(path)
	}
	if strings.ContainsAny(arg, "/*?[") {
		return nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, cerr := kube.Config(cl.kubeconfig, cl.context)
	if cerr != nil {
		return nil, err // no cluster to look in: the local answer stands
	}
	kc, cerr := kubernetes.NewForConfig(cfg)
	if cerr != nil {
		return nil, fmt.Errorf("%v; and the cluster: %w", err, cerr)
	}
	run, cerr := clusterstore.Get(ctx, kc, cl.namespace, arg)
	if cerr != nil {
		return nil, fmt.Errorf("%v; and in the cluster: %w", err, cerr)
	}
	return journal.Parse(bytes.NewReader(run.Text), "ConfigMap "+run.Namespace+"/"+run.Name)
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
