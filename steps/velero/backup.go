package velero

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Backup is the velero_backup kind.
type Backup struct {
	dyn dynamic.Interface // nil: built from the engine's REST config
}

func concat(parts ...[]plans.ArgSchema) []plans.ArgSchema {
	var out []plans.ArgSchema
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var backupSchema = &plans.KindSchema{
	Name:    "velero_backup",
	Summary: "Ask Velero for a backup (velero backup create): create its Backup object and watch it until Velero reports Completed; Failed, PartiallyFailed or FailedValidation fail the step with Velero's reasons. See docs/velero.md.",
	Target:  plans.TargetCluster,
	Args: concat(
		[]plans.ArgSchema{nameArg("Backup"), namespaceArg},
		backupSpecArgs,
		[]plans.ArgSchema{waitArg("Velero reports Completed, Failed, PartiallyFailed or FailedValidation")},
	),
	Outputs: []plans.OutputSchema{
		{Name: "name", Type: cty.String, Doc: "The Backup's name, for velero_restore's from_backup; known once the step has run."},
		{Name: "phase", Type: cty.String, Doc: "Velero's phase when the step ended: Completed (with wait = false, the phase then; New when Velero had not picked it up)."},
		{Name: "items_backed_up", Type: cty.Number, Doc: "Items Velero backed up (status.progress.itemsBackedUp)."},
		{Name: "errors", Type: cty.Number, Doc: "Errors Velero counted (status.errors)."},
		{Name: "warnings", Type: cty.Number, Doc: "Warnings Velero counted (status.warnings)."},
		{Name: "started", Type: cty.String, Doc: "When Velero started it (RFC 3339), or empty."},
		{Name: "completed", Type: cty.String, Doc: "When Velero completed it (RFC 3339), or empty."},
	},
	Check: func(args cty.Value) []plans.ArgError {
		return append(checkDNS(args, "name", false), checkDNS(args, "namespace", true)...)
	},
}

// Schema implements engine.Kind.
func (Backup) Schema() *plans.KindSchema { return backupSchema }

// backupSpec is a Backup's spec (or a Schedule's template) from the
// arguments; only what is set is written, so Velero's defaults apply to the
// rest.
func backupSpec(a engine.Args) (map[string]any, error) {
	spec := map[string]any{}
	for arg, field := range map[string]string{
		"include_namespaces": "includedNamespaces", "exclude_namespaces": "excludedNamespaces",
		"include_resources": "includedResources", "exclude_resources": "excludedResources",
	} {
		if l := listArg(a, arg); len(l) > 0 {
			spec[field] = strList(l)
		}
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
	if a.Set("ttl") {
		spec["ttl"] = a.Duration("ttl").String() // as Velero writes it: "720h0m0s"
	}
	if s := a.String("storage_location"); s != "" {
		spec["storageLocation"] = s
	}
	if a.Set("snapshot_volumes") {
		spec["snapshotVolumes"] = a.Bool("snapshot_volumes")
	}
	return spec, nil
}

// scopeText says what a backup covers, for summaries.
func scopeText(a engine.Args) string {
	s := "all namespaces"
	if l := listArg(a, "include_namespaces"); len(l) > 0 {
		s = "namespaces " + strings.Join(l, ", ")
	}
	if l := listArg(a, "exclude_namespaces"); len(l) > 0 {
		s += " except " + strings.Join(l, ", ")
	}
	if l := listArg(a, "include_resources"); len(l) > 0 {
		s += " (only " + strings.Join(l, ", ") + ")"
	}
	if sel := a.String("label_selector"); sel != "" {
		s += " with labels " + sel
	}
	return s
}

// backupFlags are the velero CLI flags of a backup spec, in the CLI's words.
func backupFlags(a engine.Args) []string {
	var out []string
	for _, f := range []struct{ arg, flag string }{
		{"include_namespaces", "--include-namespaces"}, {"exclude_namespaces", "--exclude-namespaces"},
		{"include_resources", "--include-resources"}, {"exclude_resources", "--exclude-resources"},
	} {
		if l := listArg(a, f.arg); len(l) > 0 {
			out = append(out, f.flag+"="+engine.Quote(strings.Join(l, ",")))
		}
	}
	if s := a.String("label_selector"); s != "" {
		out = append(out, "--selector="+engine.Quote(s))
	}
	if a.Set("ttl") {
		out = append(out, "--ttl="+a.Duration("ttl").String())
	}
	if s := a.String("storage_location"); s != "" {
		out = append(out, "--storage-location="+engine.Quote(s))
	}
	if a.Set("snapshot_volumes") {
		out = append(out, fmt.Sprintf("--snapshot-volumes=%t", a.Bool("snapshot_volumes")))
	}
	return out
}

func namespaceFlag(ns string) []string {
	if ns == DefaultNamespace {
		return nil
	}
	return []string{"--namespace=" + engine.Quote(ns)}
}

// failure is Velero's own verdict on an object: the step fails with it.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

// veleroFailure explains a failed Backup or Restore from its status.
func veleroFailure(kind, noun string, u *unstructured.Unstructured) error {
	r := ref(kind, u.GetNamespace(), u.GetName())
	p := phaseOf(u)
	hint := fmt.Sprintf("see velero %s describe %s --details and velero %s logs %s", noun, u.GetName(), noun, u.GetName())
	if u.GetNamespace() != DefaultNamespace {
		hint = fmt.Sprintf("see velero -n %s %s describe %s --details and velero -n %s %s logs %s", u.GetNamespace(), noun, u.GetName(), u.GetNamespace(), noun, u.GetName())
	}
	counts := fmt.Sprintf("%d errors, %d warnings", num(u, "status", "errors"), num(u, "status", "warnings"))
	switch p {
	case PhaseFailedValidation:
		errs := strs(u, "status", "validationErrors")
		if len(errs) == 0 {
			errs = []string{"Velero gave no reason"}
		}
		return &failure{fmt.Sprintf("%s failed validation (phase FailedValidation): %s", r, strings.Join(errs, "; "))}
	case PhaseFailed:
		msg := fmt.Sprintf("%s failed (phase Failed)", r)
		if fr := str(u, "status", "failureReason"); fr != "" {
			msg += ": " + fr
		}
		return &failure{msg + "; " + counts + "; " + hint}
	case PhasePartiallyFailed:
		return &failure{fmt.Sprintf("%s partially failed (phase PartiallyFailed): %s; %s", r, counts, hint)}
	case PhaseDeleting:
		return &failure{fmt.Sprintf("%s is being deleted (phase Deleting)", r)}
	}
	return &failure{fmt.Sprintf("%s ended in phase %s", r, p)}
}

// existing reports an object of the wanted name that is already there: our
// own Completed one is a no-op, our own in-progress one is waited for, any
// other is a blocker.
func existing(ch *engine.Change, kind, noun string, u *unstructured.Unstructured, wait bool, outputs func(*unstructured.Unstructured) cty.Value, describe func(*unstructured.Unstructured) string) *engine.Change {
	r := ref(kind, u.GetNamespace(), u.GetName())
	p := phaseOf(u)
	if !ours(u) {
		ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s exists (phase %s) and was not created by runbook (no %s=%s label): choose another name, or label it to adopt it", r, p, ManagedByLabel, managedBy))
		return ch
	}
	// Nothing is created: the planned command is not shown, the wait is.
	var waits []string
	for _, d := range ch.Details {
		if !strings.HasPrefix(d, "equivalent: ") {
			waits = append(waits, d)
		}
	}
	ch.Details = nil
	if by := u.GetAnnotations()[AnnRunID]; by != "" {
		ch.Details = append(ch.Details, "created by runbook run "+by)
	}
	if t := timeText(u, "completionTimestamp"); t != "" {
		ch.Details = append(ch.Details, "completed "+t)
	}
	switch {
	case p == PhaseCompleted:
		ch.Action, ch.Summary, ch.Outputs = engine.ActionNoOp, fmt.Sprintf("%s is already %s", r, describe(u)), outputs(u)
	case p == PhaseDeleting:
		ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s is being deleted (phase Deleting): run again once Velero has deleted it, or choose another name", r))
	case failedPhase(p):
		ch.Blockers = append(ch.Blockers, fmt.Sprintf("%v; it exists under the name this step would use: delete it (velero %s delete %s) or choose another name", veleroFailure(kind, noun, u), noun, u.GetName()))
	case !wait:
		ch.Action, ch.Summary, ch.Outputs = engine.ActionNoOp, fmt.Sprintf("%s exists, %s (wait = false)", r, describe(u)), outputs(u)
	default:
		ch.Summary = fmt.Sprintf("wait for %s, created earlier by runbook and now %s", r, describe(u))
		ch.Details = append(ch.Details, waits...)
	}
	return ch
}

// createOrAdopt creates the object, or adopts the one runbook created
// earlier under that name (a retry, a resume): never a second one.
func createOrAdopt(ctx context.Context, req *engine.Request, ri dynamic.ResourceInterface, kind, noun, ns, name string, spec map[string]any) (*unstructured.Unstructured, error) {
	r := ref(kind, ns, name)
	cur, err := ri.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		u := newObject(kind, ns, name)
		markOurs(u, req)
		u.Object["spec"] = spec
		cur, err = ri.Create(ctx, u, metav1.CreateOptions{FieldManager: managedBy})
		if err == nil {
			req.Emit("velero_created", "created "+r, nil)
			return cur, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating %s: %w", r, err)
		}
		cur, err = ri.Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r, err)
	}
	if !ours(cur) {
		return nil, fmt.Errorf("%s exists and was not created by runbook (no %s=%s label): refusing to adopt it", r, ManagedByLabel, managedBy)
	}
	if failedPhase(phaseOf(cur)) {
		return nil, fmt.Errorf("%w; it exists under the name this step would use: delete it (velero %s delete %s) or choose another name", veleroFailure(kind, noun, cur), noun, name)
	}
	req.Emit("velero_adopted", fmt.Sprintf("%s exists (created by runbook, phase %s): waiting for it instead of creating another", r, phaseOf(cur)), nil)
	return cur, nil
}

// waitDone watches a Backup or Restore until Velero's verdict, emitting
// each new phase.
func waitDone(ctx context.Context, req *engine.Request, ri dynamic.ResourceInterface, kind, noun string, cur *unstructured.Unstructured, describe func(*unstructured.Unstructured) string) (*unstructured.Unstructured, error) {
	r := ref(kind, cur.GetNamespace(), cur.GetName())
	lastMsg := ""
	final, err := watchUntil(ctx, ri, cur.GetName(), func(u *unstructured.Unstructured) (bool, error) {
		if msg := describe(u); msg != lastMsg {
			req.Emit("waiting", fmt.Sprintf("%s: %s", r, msg), nil)
			lastMsg = msg
		}
		switch p := phaseOf(u); {
		case p == PhaseCompleted:
			return true, nil
		case failedPhase(p):
			return true, veleroFailure(kind, noun, u)
		}
		return false, nil
	})
	if err != nil {
		var f *failure
		if errors.As(err, &f) {
			return final, err
		}
		if final == nil {
			final = cur
		}
		return final, waitError(ctx, err, r, "Completed", describe(final))
	}
	return final, nil
}

// Plan implements engine.Kind: read-only, it checks that Velero's CRDs are
// served, what an existing Backup of that name is, and the storage
// location.
func (k Backup) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	ns := req.Args.String("namespace")
	name, known := objectName(req)
	if _, err := backupSpec(req.Args); err != nil {
		return nil, err
	}
	ch := &engine.Change{Action: engine.ActionChange,
		Summary: fmt.Sprintf("create Velero Backup %s/%s of %s", ns, name, scopeText(req.Args)),
		Outputs: backupSchema.UnknownOutputs()}
	cmd := append([]string{"velero", "backup", "create", quoteName(name, known)}, namespaceFlag(ns)...)
	cmd = append(cmd, backupFlags(req.Args)...)
	if req.Args.Bool("wait") {
		cmd = append(cmd, "--wait")
		ch.Details = append(ch.Details, fmt.Sprintf("then watches it until Velero reports Completed (Failed, PartiallyFailed or FailedValidation fail the step), for at most the step's timeout, %s", req.Config.Timeout))
	}
	ch.Details = append([]string{"equivalent: " + strings.Join(cmd, " ")}, ch.Details...)
	dc, err := client(ctx, req, k.dyn)
	if errors.Is(err, engine.ErrOffline) {
		ch.Warnings = append(ch.Warnings, "offline: Velero's CRDs, its storage location and existing backups were not checked")
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	if !req.Args.Known("namespace") || !req.Args.Known("storage_location") {
		ch.Details = append(ch.Details, "Velero's namespace or storage location is known once an earlier step has run: they are checked just before the backup")
		return ch, nil
	}
	if ok, err := preflight(ctx, dc, ch, ns, "backups", "backupstoragelocations"); err != nil {
		return nil, err
	} else if !ok {
		return ch, nil
	}
	if known {
		cur, err := dc.Resource(backupsGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return existing(ch, "Backup", "backup", cur, req.Args.Bool("wait"), backupRequest.outputs, backupRequest.progress), nil
		} else if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Backup %s/%s: %w", ns, name, err)
		}
	}
	detail, warns, blocks, err := storageLocation(ctx, dc, ns, req.Args.String("storage_location"), true)
	if err != nil {
		return nil, err
	}
	if detail != "" {
		ch.Details = append(ch.Details, detail)
	}
	ch.Warnings = append(ch.Warnings, warns...)
	ch.Blockers = append(ch.Blockers, blocks...)
	return ch, nil
}

// Apply implements engine.Kind: it creates the Backup (or adopts the one it
// created before), then watches it until Velero's verdict.
func (k Backup) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	return applyRequest(ctx, req, k.dyn, backupRequest)
}

var (
	backupRequest = veleroRequest{kind: "Backup", noun: "backup", gvr: backupsGVR, spec: backupSpec,
		items: "itemsBackedUp", itemsOutput: "items_backed_up", done: "backed up"}
	restoreRequest = veleroRequest{kind: "Restore", noun: "restore", gvr: restoresGVR, spec: restoreSpec,
		items: "itemsRestored", itemsOutput: "items_restored", done: "restored"}
)

// veleroRequest is what differs between Velero's Backup and Restore requests,
// which runbook creates and then watches in the same way.
type veleroRequest struct {
	kind, noun  string // "Backup", "backup"
	gvr         schema.GroupVersionResource
	spec        func(engine.Args) (map[string]any, error)
	items       string // the status.progress counter of items done
	itemsOutput string // the step output that reports it
	done        string // what happened to them: "backed up"
}

// outputs are the step's outputs from the object.
func (o veleroRequest) outputs(u *unstructured.Unstructured) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"name":        cty.StringVal(u.GetName()),
		"phase":       cty.StringVal(phaseOf(u)),
		o.itemsOutput: cty.NumberIntVal(num(u, "status", "progress", o.items)),
		"errors":      cty.NumberIntVal(num(u, "status", "errors")),
		"warnings":    cty.NumberIntVal(num(u, "status", "warnings")),
		"started":     cty.StringVal(timeText(u, "startTimestamp")),
		"completed":   cty.StringVal(timeText(u, "completionTimestamp")),
	})
}

// progress is the phase with Velero's counts: "InProgress (3 of 10 items
// backed up)".
func (o veleroRequest) progress(u *unstructured.Unstructured) string {
	if u == nil {
		return "none (the " + o.kind + " was not seen)"
	}
	p := phaseOf(u)
	if p == PhaseNew {
		p = "New (Velero has not picked it up: is the Velero server running?)"
	}
	done, total := num(u, "status", "progress", o.items), num(u, "status", "progress", "totalItems")
	if total > 0 {
		p += fmt.Sprintf(" (%d of %d items %s)", done, total, o.done)
	}
	return p
}

// applyRequest creates the object (or adopts the one this step created
// before) and, unless wait = false, watches it until Velero's verdict.
func applyRequest(ctx context.Context, req *engine.Request, dyn dynamic.Interface, o veleroRequest) (cty.Value, error) {
	dc, err := client(ctx, req, dyn)
	if err != nil {
		return cty.NilVal, err
	}
	ns := req.Args.String("namespace")
	name, known := objectName(req)
	if !known {
		return cty.NilVal, fmt.Errorf("the %s has no name: set name, or run it with runbook apply, whose run id names it", o.kind)
	}
	spec, err := o.spec(req.Args)
	if err != nil {
		return cty.NilVal, err
	}
	ri := dc.Resource(o.gvr).Namespace(ns)
	cur, err := createOrAdopt(ctx, req, ri, o.kind, o.noun, ns, name, spec)
	if err != nil {
		return cty.NilVal, err
	}
	if !req.Args.Bool("wait") {
		return o.outputs(cur), nil
	}
	final, err := waitDone(ctx, req, ri, o.kind, o.noun, cur, o.progress)
	if err != nil {
		return cty.NilVal, err
	}
	req.Emit("velero_completed", fmt.Sprintf("%s Completed: %d items %s, %d warnings", ref(o.kind, ns, name), num(final, "status", "progress", o.items), o.done, num(final, "status", "warnings")), nil)
	return o.outputs(final), nil
}
