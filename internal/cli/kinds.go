package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/all"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"
)

type kindDoc struct {
	Name    string   `json:"name"`
	Summary string   `json:"summary"`
	Target  string   `json:"target"`
	Args    []argDoc `json:"arguments"`
	Outputs []argDoc `json:"outputs"`
}

type argDoc struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Required bool     `json:"required,omitempty"`
	Default  string   `json:"default,omitempty"`
	Format   string   `json:"format,omitempty"`
	OneOf    []string `json:"one_of,omitempty"`
	Doc      string   `json:"description"`
}

func docOf(k *plans.KindSchema) kindDoc {
	d := kindDoc{Name: k.Name, Summary: k.Summary, Target: k.Target.String(), Args: []argDoc{}, Outputs: []argDoc{}}
	for _, a := range k.Args {
		ad := argDoc{Name: a.Name, Type: typeexpr.TypeString(a.Type), Required: a.Required, Format: string(a.Format), OneOf: a.OneOf, Doc: a.Doc}
		if a.Default != cty.NilVal {
			ad.Default = valueString(a.Default)
		}
		d.Args = append(d.Args, ad)
	}
	for _, o := range k.Outputs {
		d.Outputs = append(d.Outputs, argDoc{Name: o.Name, Type: typeexpr.TypeString(o.Type), Doc: o.Doc})
	}
	return d
}

func newKinds(stdio *IO) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "kinds [KIND]",
		Short: "List step kinds, or show one kind's arguments and outputs",
		Args:  cobra.MaximumNArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return all.Registry().Names(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			reg := all.Registry()
			names := reg.Names()
			if len(args) == 1 {
				if _, ok := reg.Schema(args[0]); !ok {
					msg := fmt.Sprintf("no step kind %q", args[0])
					if s := plansSuggest(args[0], names); s != "" {
						msg += fmt.Sprintf("; did you mean %q?", s)
					}
					return usageError("%s", msg)
				}
				names = args
			}
			var docs []kindDoc
			for _, n := range names {
				s, _ := reg.Schema(n)
				docs = append(docs, docOf(s))
			}
			switch output {
			case "json":
				enc := json.NewEncoder(stdio.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(docs)
			case "text":
			default:
				return usageError("-o %q: kinds writes text or json", output)
			}
			if len(args) == 0 {
				for _, d := range docs {
					fmt.Fprintf(stdio.Out, "%-18s %-8s %s\n", d.Name, d.Target, d.Summary)
				}
				return nil
			}
			d := docs[0]
			fmt.Fprintf(stdio.Out, "%s (%s)\n  %s\n\nArguments:\n", d.Name, d.Target, d.Summary)
			for _, a := range d.Args {
				var notes []string
				if a.Required {
					notes = append(notes, "required")
				}
				if a.Default != "" {
					notes = append(notes, "default "+a.Default)
				}
				if a.Format != "" {
					notes = append(notes, a.Format)
				}
				if len(a.OneOf) > 0 {
					notes = append(notes, "one of "+strings.Join(a.OneOf, ", "))
				}
				fmt.Fprintf(stdio.Out, "  %-28s %-14s %s", a.Name, a.Type, a.Doc)
				if len(notes) > 0 {
					fmt.Fprintf(stdio.Out, " [%s]", strings.Join(notes, "; "))
				}
				fmt.Fprintln(stdio.Out)
			}
			fmt.Fprintf(stdio.Out, "  %-28s %-14s %s\n", "(every step)", "", strings.Join(plans.CommonStepArgs, ", "))
			if len(d.Outputs) > 0 {
				fmt.Fprintln(stdio.Out, "\nOutputs:")
				for _, o := range d.Outputs {
					fmt.Fprintf(stdio.Out, "  %-28s %-14s %s\n", o.Name, o.Type, o.Doc)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
