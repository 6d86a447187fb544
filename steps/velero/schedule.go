package velero

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// Schedule is the velero_schedule kind.
type Schedule struct {
	dyn dynamic.Interface // nil: built from the engine's REST config
}

var scheduleSchema = &plans.KindSchema{
	Name:    "velero_schedule",
	Summary: "Create or update a Velero Schedule (velero schedule create NAME --schedule=CRON) so that Velero takes the described backup on a cron schedule; no-op when it is already as planned. The cron expression is checked when the plan is made. See docs/velero.md.",
	Target:  plans.TargetCluster,
	Args: concat(
		[]plans.ArgSchema{
			{Name: "name", Type: cty.String, Required: true, Doc: "The Schedule's name; Velero names its backups <name>-<timestamp>."},
			namespaceArg,
			{Name: "schedule", Type: cty.String, Required: true, Doc: "When Velero backs up, as cron (--schedule): 5 fields, minute hour day-of-month month day-of-week, e.g. \"0 0 * * *\" (daily at midnight), or @daily, \"@every 6h\"; checked when the plan is made."},
		},
		backupSpecArgs,
		[]plans.ArgSchema{
			{Name: "paused", Type: cty.Bool, Default: cty.False, Doc: "Create or keep the Schedule paused (velero schedule pause); false un-pauses it."},
			waitArg("Velero has validated a new Schedule (phase Enabled; FailedValidation fails the step)"),
		},
	),
	Outputs: []plans.OutputSchema{
		{Name: "name", Type: cty.String, Doc: "The Schedule's name."},
		{Name: "phase", Type: cty.String, Doc: "Velero's phase of the Schedule: Enabled (with wait = false, New until Velero has seen it)."},
	},
	Check: func(args cty.Value) []plans.ArgError {
		errs := append(checkDNS(args, "name", false), checkDNS(args, "namespace", true)...)
		if v := args.GetAttr("schedule"); v.IsKnown() && !v.IsNull() {
			if err := validateCron(v.AsString()); err != nil {
				errs = append(errs, plans.ArgError{Arg: "schedule", Summary: "Invalid schedule", Detail: err.Error() + "."})
			}
		}
		return errs
	},
}

// Schema implements engine.Kind.
func (Schedule) Schema() *plans.KindSchema { return scheduleSchema }

// templateKeys are the fields of spec.template that the arguments decide;
// runbook leaves any other template field (hooks, ...) as it finds it.
var templateKeys = []string{"excludedNamespaces", "excludedResources", "includedNamespaces", "includedResources", "labelSelector", "snapshotVolumes", "storageLocation", "ttl"}

func scheduleSpec(a engine.Args) (map[string]any, error) {
	tmpl, err := backupSpec(a)
	if err != nil {
		return nil, err
	}
	spec := map[string]any{"schedule": a.String("schedule"), "template": tmpl}
	if a.Bool("paused") {
		spec["paused"] = true
	}
	return spec, nil
}

// change is one field a plan would change.
type fieldChange struct {
	path       string
	have, want any
}

// scheduleChanges compares the fields runbook decides.
func scheduleChanges(cur *unstructured.Unstructured, want map[string]any) []fieldChange {
	have, _ := cur.Object["spec"].(map[string]any)
	var out []fieldChange
	if h, w := have["schedule"], want["schedule"]; !sameValue("", h, w) {
		out = append(out, fieldChange{"spec.schedule", h, w})
	}
	if h, w := have["paused"] == true, want["paused"] == true; h != w {
		out = append(out, fieldChange{"spec.paused", h, w})
	}
	ht, _ := have["template"].(map[string]any)
	wt, _ := want["template"].(map[string]any)
	for _, k := range templateKeys {
		if h, w := ht[k], wt[k]; !sameValue(k, h, w) {
			out = append(out, fieldChange{"spec.template." + k, h, w})
		}
	}
	return out
}

// sameValue compares JSON-shaped values; TTLs compare as durations ("720h"
// is "720h0m0s").
func sameValue(key string, a, b any) bool {
	if key == "ttl" {
		as, aok := a.(string)
		bs, bok := b.(string)
		if aok && bok {
			ad, aerr := time.ParseDuration(as)
			bd, berr := time.ParseDuration(bs)
			if aerr == nil && berr == nil {
				return ad == bd
			}
		}
	}
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return bytes.Equal(ab, bb)
}

// merged is the Schedule's spec with runbook's fields set as wanted and
// every other field kept.
func merged(cur *unstructured.Unstructured, want map[string]any) map[string]any {
	have, _ := cur.Object["spec"].(map[string]any)
	spec := map[string]any{}
	for k, v := range have {
		spec[k] = v
	}
	spec["schedule"] = want["schedule"]
	if want["paused"] == true {
		spec["paused"] = true
	} else {
		delete(spec, "paused")
	}
	ht, _ := have["template"].(map[string]any)
	wt, _ := want["template"].(map[string]any)
	tmpl := map[string]any{}
	for k, v := range ht {
		tmpl[k] = v
	}
	for _, k := range templateKeys {
		if v, ok := wt[k]; ok {
			tmpl[k] = v
		} else {
			delete(tmpl, k)
		}
	}
	spec["template"] = tmpl
	return spec
}

func scheduleOutputs(u *unstructured.Unstructured) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(u.GetName()), "phase": cty.StringVal(phaseOf(u))})
}

func scheduleState(u *unstructured.Unstructured) string {
	s := "phase " + phaseOf(u)
	if lb := str(u, "status", "lastBackup"); lb != "" {
		s += ", last backup " + lb
	}
	if u.Object["spec"] != nil {
		if p, _, _ := unstructured.NestedBool(u.Object, "spec", "paused"); p {
			s += ", paused"
		}
	}
	return s
}

func scheduleInvalid(u *unstructured.Unstructured) error {
	errs := strs(u, "status", "validationErrors")
	if len(errs) == 0 {
		errs = []string{"Velero gave no reason"}
	}
	return &failure{fmt.Sprintf("%s failed Velero's validation (phase FailedValidation): %s", ref("Schedule", u.GetNamespace(), u.GetName()), strings.Join(errs, "; "))}
}

// Plan implements engine.Kind: read-only, it checks the cron expression,
// Velero's CRDs and storage location, and compares an existing Schedule of
// that name field by field.
func (k Schedule) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	ns, name, cron := req.Args.String("namespace"), req.Args.String("name"), req.Args.String("schedule")
	if req.Args.Known("schedule") {
		if err := validateCron(cron); err != nil {
			return nil, fmt.Errorf("schedule: %w", err)
		}
	}
	want, err := scheduleSpec(req.Args)
	if err != nil {
		return nil, err
	}
	cmd := append([]string{"velero", "schedule", "create", quoteName(name, req.Args.Known("name"))}, namespaceFlag(ns)...)
	cmd = append(cmd, "--schedule="+quoteName(cron, req.Args.Known("schedule")))
	cmd = append(cmd, backupFlags(req.Args)...)
	if req.Args.Bool("paused") {
		cmd = append(cmd, "--paused")
	}
	ch := &engine.Change{Action: engine.ActionChange, Outputs: scheduleSchema.UnknownOutputs(),
		Summary: fmt.Sprintf("create Velero Schedule %s/%s: %q, backing up %s", ns, name, cron, scopeText(req.Args)),
		Details: []string{"equivalent: " + strings.Join(cmd, " ")}}
	if req.Args.Bool("wait") {
		ch.Details = append(ch.Details, fmt.Sprintf("then watches a new Schedule until Velero has validated it (phase Enabled), for at most the step's timeout, %s", req.Config.Timeout))
	}
	dc, err := client(ctx, req, k.dyn)
	if errors.Is(err, engine.ErrOffline) {
		ch.Warnings = append(ch.Warnings, "offline: Velero's CRDs, its storage location and an existing Schedule were not checked")
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	if !req.Args.Known("namespace") || !req.Args.Known("storage_location") {
		ch.Details = append(ch.Details, "Velero's namespace or storage location is known once an earlier step has run: they are checked just before the Schedule is written")
		return ch, nil
	}
	if ok, err := preflight(ctx, dc, ch, ns, "schedules", "backupstoragelocations"); err != nil {
		return nil, err
	} else if !ok {
		return ch, nil
	}
	r := ref("Schedule", ns, name)
	if req.Args.Known("name") {
		cur, err := dc.Resource(schedulesGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", r, err)
		case !ours(cur):
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s exists and was not created by runbook (no %s=%s label): choose another name, or label it to let runbook manage it", r, ManagedByLabel, managedBy))
			return ch, nil
		case phaseOf(cur) == PhaseFailedValidation:
			ch.Summary = fmt.Sprintf("recreate Velero Schedule %s/%s: %q (Velero marked it FailedValidation and never looks at it again; %v)", ns, name, cron, scheduleInvalid(cur))
		default:
			diffs := scheduleChanges(cur, want)
			if len(diffs) == 0 {
				ch.Action, ch.Outputs, ch.Details = engine.ActionNoOp, scheduleOutputs(cur), nil
				ch.Summary = fmt.Sprintf("Velero Schedule %s/%s is as planned (%s)", ns, name, scheduleState(cur))
				return ch, nil
			}
			ch.Summary = fmt.Sprintf("update Velero Schedule %s/%s: %d field(s)", ns, name, len(diffs))
			for _, d := range diffs {
				ch.Details = append(ch.Details, fmt.Sprintf("%s: %s -> %s", d.path, jsonText(d.have), jsonText(d.want)))
			}
			ch.Details = append(ch.Details, "other fields of the Schedule (hooks, ...) are kept")
		}
	}
	detail, warns, blocks, err := storageLocation(ctx, dc, ns, req.Args.String("storage_location"), false)
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

// Apply implements engine.Kind: it creates the Schedule, updates the fields
// runbook decides, or recreates one Velero marked FailedValidation; then it
// waits for Velero to validate a new one.
func (k Schedule) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	dc, err := client(ctx, req, k.dyn)
	if err != nil {
		return cty.NilVal, err
	}
	ns, name := req.Args.String("namespace"), req.Args.String("name")
	if err := validateCron(req.Args.String("schedule")); err != nil {
		return cty.NilVal, fmt.Errorf("schedule: %w", err)
	}
	want, err := scheduleSpec(req.Args)
	if err != nil {
		return cty.NilVal, err
	}
	r := ref("Schedule", ns, name)
	ri := dc.Resource(schedulesGVR).Namespace(ns)
	create := func() (*unstructured.Unstructured, error) {
		u := newObject("Schedule", ns, name)
		markOurs(u, req)
		u.Object["spec"] = want
		cur, err := ri.Create(ctx, u, metav1.CreateOptions{FieldManager: managedBy})
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", r, err)
		}
		req.Emit("velero_created", "created "+r, nil)
		return cur, nil
	}
	var cur *unstructured.Unstructured
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		cur, err = ri.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur, err = create()
			return err
		case err != nil:
			return fmt.Errorf("reading %s: %w", r, err)
		case !ours(cur):
			return fmt.Errorf("%s exists and was not created by runbook (no %s=%s label): refusing to change it", r, ManagedByLabel, managedBy)
		case phaseOf(cur) == PhaseFailedValidation:
			uid := cur.GetUID()
			if err := ri.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting %s to recreate it: %w", r, err)
			}
			req.Emit("velero_deleted", fmt.Sprintf("deleted %s (%v) to recreate it", r, scheduleInvalid(cur)), nil)
			cur, err = create()
			return err
		}
		diffs := scheduleChanges(cur, want)
		if len(diffs) == 0 {
			return nil
		}
		cur.Object["spec"] = merged(cur, want)
		upd, err := ri.Update(ctx, cur, metav1.UpdateOptions{FieldManager: managedBy})
		if err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return fmt.Errorf("updating %s: %w", r, err)
		}
		paths := make([]string, len(diffs))
		for i, d := range diffs {
			paths[i] = d.path
		}
		req.Emit("velero_updated", fmt.Sprintf("updated %s: %s", r, strings.Join(paths, ", ")), nil)
		cur = upd
		return nil
	})
	if err != nil {
		return cty.NilVal, err
	}
	if p := phaseOf(cur); !req.Args.Bool("wait") || p == PhaseEnabled {
		return scheduleOutputs(cur), nil
	} else if p == PhaseFailedValidation {
		return cty.NilVal, scheduleInvalid(cur)
	}
	final, err := watchUntil(ctx, ri, name, func(u *unstructured.Unstructured) (bool, error) {
		switch phaseOf(u) {
		case PhaseEnabled:
			return true, nil
		case PhaseFailedValidation:
			return true, scheduleInvalid(u)
		}
		return false, nil
	})
	if err != nil {
		var f *failure
		if errors.As(err, &f) {
			return cty.NilVal, err
		}
		last := "none"
		if final != nil {
			last = phaseOf(final)
			if last == PhaseNew {
				last = "New (Velero has not validated it: is the Velero server running?)"
			}
		}
		return cty.NilVal, waitError(ctx, err, r, "Enabled", last)
	}
	req.Emit("velero_enabled", fmt.Sprintf("%s is Enabled: Velero backs up on %q", r, req.Args.String("schedule")), nil)
	return scheduleOutputs(final), nil
}
