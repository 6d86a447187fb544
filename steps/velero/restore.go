package velero

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
)

// Restore is the velero_restore kind.
type Restore struct {
	dyn dynamic.Interface // nil: built from the engine's REST config
}

var restoreSchema = &plans.KindSchema{
	Name:    "velero_restore",
	Summary: "Ask Velero to restore a Completed backup (velero restore create --from-backup): create its Restore object and watch it until Velero reports Completed; Failed, PartiallyFailed or FailedValidation fail the step. See docs/velero.md.",
	Target:  plans.TargetCluster,
	Args: []plans.ArgSchema{
		{Name: "from_backup", Type: cty.String, Required: true, Doc: "The Backup to restore (--from-backup), e.g. a velero_backup step's name output; it must be Completed."},
		nameArg("Restore"),
		namespaceArg,
		{Name: "include_namespaces", Type: cty.List(cty.String), Doc: "Namespaces of the backup to restore (--include-namespaces); all when unset."},
		{Name: "exclude_namespaces", Type: cty.List(cty.String), Doc: "Namespaces of the backup to leave out (--exclude-namespaces)."},
		{Name: "include_resources", Type: cty.List(cty.String), Doc: "Resources to restore, as resource.group (--include-resources); all when unset."},
		{Name: "exclude_resources", Type: cty.List(cty.String), Doc: "Resources to leave out (--exclude-resources)."},
		{Name: "namespace_mappings", Type: cty.Map(cty.String), Doc: "Restore a namespace under another name (--namespace-mappings), e.g. { app = \"app-drill\" } for a drill beside the original."},
		{Name: "label_selector", Type: cty.String, Format: plans.FormatSelector, Doc: "Only objects with these labels (--selector)."},
		{Name: "restore_pvs", Type: cty.Bool, Doc: "Restore persistent volumes from their snapshots (--restore-volumes); Velero's default when unset."},
		{Name: "existing_resource_policy", Type: cty.String, OneOf: []string{"none", "update"}, Doc: "What Velero does with objects that already exist (--existing-resource-policy): none leaves them (a warning each), update updates them; Velero's default (none) when unset."},
		waitArg("Velero reports Completed, Failed, PartiallyFailed or FailedValidation"),
	},
	Outputs: []plans.OutputSchema{
		{Name: "name", Type: cty.String, Doc: "The Restore's name."},
		{Name: "phase", Type: cty.String, Doc: "Velero's phase when the step ended: Completed (with wait = false, the phase then)."},
		{Name: "items_restored", Type: cty.Number, Doc: "Items Velero restored (status.progress.itemsRestored)."},
		{Name: "errors", Type: cty.Number, Doc: "Errors Velero counted (status.errors)."},
		{Name: "warnings", Type: cty.Number, Doc: "Warnings Velero counted (status.warnings), e.g. objects that existed already."},
		{Name: "started", Type: cty.String, Doc: "When Velero started it (RFC 3339), or empty."},
		{Name: "completed", Type: cty.String, Doc: "When Velero completed it (RFC 3339), or empty."},
	},
	Check: func(args cty.Value) []plans.ArgError {
		errs := append(checkDNS(args, "name", false), checkDNS(args, "namespace", true)...)
		errs = append(errs, checkDNS(args, "from_backup", false)...)
		if m := args.GetAttr("namespace_mappings"); m.IsKnown() && !m.IsNull() {
			for it := m.ElementIterator(); it.Next(); {
				k, v := it.Element()
				for _, s := range []cty.Value{k, v} {
					if !s.IsKnown() || s.IsNull() {
						continue
					}
					if e := validation.IsDNS1123Label(s.AsString()); len(e) > 0 {
						errs = append(errs, plans.ArgError{Arg: "namespace_mappings", Summary: "Invalid namespace_mappings", Detail: fmt.Sprintf("%q is not a namespace name: %s.", s.AsString(), strings.Join(e, "; "))})
					}
				}
			}
		}
		return errs
	},
}

// Schema implements engine.Kind.
func (Restore) Schema() *plans.KindSchema { return restoreSchema }

// mappings are namespace_mappings sorted by source namespace.
func mappings(a engine.Args) [][2]string {
	m := a.StringMap("namespace_mappings")
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func restoreSpec(a engine.Args) (map[string]any, error) {
	spec := map[string]any{"backupName": a.String("from_backup")}
	for arg, field := range map[string]string{
		"include_namespaces": "includedNamespaces", "exclude_namespaces": "excludedNamespaces",
		"include_resources": "includedResources", "exclude_resources": "excludedResources",
	} {
		if l := listArg(a, arg); len(l) > 0 {
			spec[field] = strList(l)
		}
	}
	if ms := mappings(a); len(ms) > 0 {
		m := map[string]any{}
		for _, kv := range ms {
			m[kv[0]] = kv[1]
		}
		spec["namespaceMapping"] = m
	}
	if s := a.String("label_selector"); s != "" && a.Known("label_selector") {
		sel, err := metav1.ParseToLabelSelector(s)
		if err != nil {
			return nil, fmt.Errorf("label_selector %q: %w", s, err)
		}
		m, err := toUnstructured(sel)
		if err != nil {
			return nil, err
		}
		spec["labelSelector"] = m
	}
	if a.Set("restore_pvs") {
		spec["restorePVs"] = a.Bool("restore_pvs")
	}
	if s := a.String("existing_resource_policy"); s != "" {
		spec["existingResourcePolicy"] = s
	}
	return spec, nil
}

func restoreCommand(name string, known bool, ns string, a engine.Args) []string {
	cmd := append([]string{"velero", "restore", "create", quoteName(name, known)}, namespaceFlag(ns)...)
	cmd = append(cmd, "--from-backup="+quoteName(a.String("from_backup"), a.Known("from_backup")))
	for _, f := range []struct{ arg, flag string }{
		{"include_namespaces", "--include-namespaces"}, {"exclude_namespaces", "--exclude-namespaces"},
		{"include_resources", "--include-resources"}, {"exclude_resources", "--exclude-resources"},
	} {
		if l := listArg(a, f.arg); len(l) > 0 {
			cmd = append(cmd, f.flag+"="+engine.Quote(strings.Join(l, ",")))
		}
	}
	if ms := mappings(a); len(ms) > 0 {
		parts := make([]string, len(ms))
		for i, kv := range ms {
			parts[i] = kv[0] + ":" + kv[1]
		}
		cmd = append(cmd, "--namespace-mappings="+engine.Quote(strings.Join(parts, ",")))
	}
	if s := a.String("label_selector"); s != "" {
		cmd = append(cmd, "--selector="+engine.Quote(s))
	}
	if a.Set("restore_pvs") {
		cmd = append(cmd, fmt.Sprintf("--restore-volumes=%t", a.Bool("restore_pvs")))
	}
	if s := a.String("existing_resource_policy"); s != "" {
		cmd = append(cmd, "--existing-resource-policy="+engine.Quote(s))
	}
	if a.Bool("wait") {
		cmd = append(cmd, "--wait")
	}
	return cmd
}

// Plan implements engine.Kind: read-only, it checks Velero's CRDs, that the
// backup exists and is Completed, the namespaces the restore would write
// into, and an existing Restore of that name.
func (k Restore) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	ns := req.Args.String("namespace")
	name, known := objectName(req)
	from := req.Args.String("from_backup")
	if _, err := restoreSpec(req.Args); err != nil {
		return nil, err
	}
	s := fmt.Sprintf("create Velero Restore %s/%s from Backup %s", ns, name, from)
	if ms := mappings(req.Args); len(ms) > 0 {
		parts := make([]string, len(ms))
		for i, kv := range ms {
			parts[i] = kv[0] + " into " + kv[1]
		}
		s += ", namespace " + strings.Join(parts, ", ")
	}
	ch := &engine.Change{Action: engine.ActionChange, Summary: s, Outputs: restoreSchema.UnknownOutputs(),
		Details: []string{"equivalent: " + strings.Join(restoreCommand(name, known, ns, req.Args), " ")}}
	if req.Args.Bool("wait") {
		ch.Details = append(ch.Details, fmt.Sprintf("then watches it until Velero reports Completed (Failed, PartiallyFailed or FailedValidation fail the step), for at most the step's timeout, %s", req.Config.Timeout))
	}
	dc, err := client(ctx, req, k.dyn)
	if errors.Is(err, engine.ErrOffline) {
		ch.Warnings = append(ch.Warnings, "offline: Velero's CRDs, the backup and existing restores were not checked")
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	if !req.Args.Known("namespace") {
		ch.Details = append(ch.Details, "Velero's namespace is known once an earlier step has run: the backup is checked just before the restore")
		return ch, nil
	}
	if ok, err := preflight(ctx, dc, ch, ns, "restores", "backups"); err != nil {
		return nil, err
	} else if !ok {
		return ch, nil
	}
	// A Restore this step created before (a resume) settles it, whatever
	// became of the backup since.
	if known {
		cur, err := dc.Resource(restoresGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return existing(ch, "Restore", "restore", cur, req.Args.Bool("wait"), restoreRequest.outputs, restoreRequest.progress), nil
		} else if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Restore %s/%s: %w", ns, name, err)
		}
	}
	if !req.Args.Known("from_backup") {
		ch.Details = append(ch.Details, "the backup is known once an earlier step has run: it is checked (it must be Completed) just before the restore")
	} else {
		b, err := dc.Resource(backupsGVR).Namespace(ns).Get(ctx, from, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("Backup %s/%s does not exist (velero backup get lists the backups): nothing to restore from", ns, from))
		case err != nil:
			return nil, fmt.Errorf("reading Backup %s/%s: %w", ns, from, err)
		case phaseOf(b) != PhaseCompleted:
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("Backup %s/%s is %s, not Completed: restore only from a Completed backup", ns, from, backupRequest.progress(b)))
		default:
			d := fmt.Sprintf("from Backup %s/%s: Completed %s, %d items", ns, from, orText(timeText(b, "completionTimestamp"), "(no completion time)"), num(b, "status", "progress", "itemsBackedUp"))
			if l := strs(b, "spec", "includedNamespaces"); len(l) > 0 {
				d += ", namespaces " + strings.Join(l, ", ")
			}
			if e := timeText(b, "expiration"); e != "" {
				d += ", expires " + e
			}
			ch.Details = append(ch.Details, d)
		}
	}
	policy := orText(req.Args.String("existing_resource_policy"), "none")
	for _, kv := range mappings(req.Args) {
		_, err := dc.Resource(namespaceGVR).Get(ctx, kv[1], metav1.GetOptions{})
		switch {
		case err == nil:
			ch.Warnings = append(ch.Warnings, fmt.Sprintf("namespace %s exists: objects already in it are %s (existing_resource_policy = %s)", kv[1], map[string]string{"none": "left as they are and counted as warnings", "update": "updated to the backup's version"}[policy], policy))
		case apierrors.IsNotFound(err):
			ch.Details = append(ch.Details, fmt.Sprintf("namespace %s does not exist: Velero creates it", kv[1]))
		case !apierrors.IsForbidden(err):
			return nil, fmt.Errorf("reading namespace %s: %w", kv[1], err)
		}
	}
	return ch, nil
}

// Apply implements engine.Kind: it creates the Restore (or adopts the one
// it created before), then watches it until Velero's verdict.
func (k Restore) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	return applyRequest(ctx, req, k.dyn, restoreRequest)
}
