// Package velero implements velero_backup, velero_restore and
// velero_schedule: the seed's Velero procedure (velero backup create,
// velero schedule create, velero restore create --from-backup) as steps that
// create Velero's own objects (velero.io/v1 Backup, Restore, Schedule)
// through the Kubernetes API with the dynamic client, then watch their
// status until Velero reports the outcome.
//
// It is not Velero and not a Velero client library: it installs nothing,
// talks to no object storage, takes no volume snapshots and never reads a
// backup's contents. A Velero server already running in the cluster does
// the work; these kinds only ask it, check beforehand what would make it
// refuse (its CRDs missing, a backup storage location unavailable, a backup
// that is not Completed), and report what it said. Objects they create carry
// the label app.kubernetes.io/managed-by=runbook, which is how a resumed or
// repeated run recognises them as its own.
package velero

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// Group and Version are Velero's API group and the version these kinds use.
const (
	Group   = "velero.io"
	Version = "v1"
	// DefaultNamespace is where `velero install` puts Velero.
	DefaultNamespace = "velero"
	// ManagedByLabel marks objects runbook created; only those are adopted.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "runbook"
	// Annotations recording which run and step created an object.
	AnnRunID = "runbook.dev/run-id"
	AnnStep  = "runbook.dev/step"
)

var (
	backupsGVR   = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "backups"}
	restoresGVR  = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "restores"}
	schedulesGVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "schedules"}
	bslGVR       = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "backupstoragelocations"}
	crdGVR       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	namespaceGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// client returns the dynamic client: the one given (tests) or one built
// from the engine's REST configuration; engine.ErrOffline offline.
func client(ctx context.Context, req *engine.Request, given dynamic.Interface) (dynamic.Interface, error) {
	if req.Env == nil || req.Env.Offline {
		return nil, engine.ErrOffline
	}
	if given != nil {
		return given, nil
	}
	if req.Env.REST == nil {
		return nil, engine.ErrOffline
	}
	cfg, err := req.Env.REST(ctx)
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(cfg)
}

// The arguments every kind of this package shares.
var (
	nameArg = func(what string) plans.ArgSchema {
		return plans.ArgSchema{Name: "name", Type: cty.String, Doc: "The " + what + "'s name; default <step name>-<run id> (in a phase, <step name>-<node>-<run id>), the same on every attempt and resume of one run, so a resumed run finds the object it created instead of making another."}
	}
	namespaceArg = plans.ArgSchema{Name: "namespace", Type: cty.String, Default: cty.StringVal(DefaultNamespace), Doc: "The namespace Velero runs in (velero --namespace)."}
	waitArg      = func(until string) plans.ArgSchema {
		return plans.ArgSchema{Name: "wait", Type: cty.Bool, Default: cty.True, Doc: "Watch the object until " + until + ", bounded by the step's timeout; false returns once it is created."}
	}
)

// backupSpecArgs are a Backup's spec as arguments; velero_schedule takes
// them as its template.
var backupSpecArgs = []plans.ArgSchema{
	{Name: "include_namespaces", Type: cty.List(cty.String), Doc: "Namespaces to back up (--include-namespaces); all when unset."},
	{Name: "exclude_namespaces", Type: cty.List(cty.String), Doc: "Namespaces to leave out (--exclude-namespaces)."},
	{Name: "include_resources", Type: cty.List(cty.String), Doc: "Resources to back up, as resource.group (--include-resources); all when unset."},
	{Name: "exclude_resources", Type: cty.List(cty.String), Doc: "Resources to leave out (--exclude-resources)."},
	{Name: "label_selector", Type: cty.String, Format: plans.FormatSelector, Doc: "Only objects with these labels (--selector)."},
	{Name: "ttl", Type: cty.String, Format: plans.FormatDuration, Doc: "How long Velero keeps the backup (--ttl), e.g. \"720h\"; Velero's default (30 days) when unset."},
	{Name: "storage_location", Type: cty.String, Doc: "The BackupStorageLocation (--storage-location); the location marked default when unset."},
	{Name: "snapshot_volumes", Type: cty.Bool, Doc: "Take snapshots of persistent volumes (--snapshot-volumes); Velero's default when unset."},
}

// checkDNS checks that a string argument is a DNS-1123 label (label) or
// subdomain, as Kubernetes names must be.
func checkDNS(args cty.Value, arg string, label bool) []plans.ArgError {
	v := args.GetAttr(arg)
	if !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		return nil
	}
	s := v.AsString()
	errs := validation.IsDNS1123Subdomain(s)
	if label {
		errs = validation.IsDNS1123Label(s)
	}
	if len(errs) > 0 {
		return []plans.ArgError{{Arg: arg, Summary: "Invalid " + arg, Detail: fmt.Sprintf("%q: %s.", s, strings.Join(errs, "; "))}}
	}
	return nil
}

// objectName is the object's name and whether it is known yet: the name
// argument, or <step name>-<run id> once there is a run (inside a phase,
// <step name>-<node>-<run id>: one object per node).
func objectName(req *engine.Request) (string, bool) {
	if !req.Args.Known("name") {
		return engine.UnknownText, false
	}
	if req.Args.Set("name") {
		return req.Args.String("name"), true
	}
	prefix := req.Step.Name
	if req.Node != nil {
		prefix += "-" + req.Node.Name
	}
	if req.Env == nil || req.Env.RunID == "" {
		return dnsName(prefix) + "-<run id>", false
	}
	return defaultName(prefix, req.Env.RunID), true
}

// defaultName is <prefix>-<run id>, lower-cased, any character a name may
// not hold replaced by "-", the prefix shortened to keep within 63
// characters (Velero copies names into label values).
func defaultName(prefix, runID string) string {
	id := dnsName(runID)
	p := dnsName(prefix)
	if max := 63 - len(id) - 1; len(p) > max {
		p = strings.TrimRight(p[:max], "-")
	}
	if p == "" {
		return id
	}
	return p + "-" + id
}

func dnsName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

// ours reports whether runbook created the object.
func ours(u *unstructured.Unstructured) bool {
	return u.GetLabels()[ManagedByLabel] == managedBy
}

// markOurs labels and annotates a new object as runbook's.
func markOurs(u *unstructured.Unstructured, req *engine.Request) {
	l := u.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[ManagedByLabel] = managedBy
	u.SetLabels(l)
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	if req.Env != nil && req.Env.RunID != "" {
		a[AnnRunID] = req.Env.RunID
	}
	if req.Address != "" {
		a[AnnStep] = req.Address
	}
	u.SetAnnotations(a)
}

func newObject(kind, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(Group + "/" + Version)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// quoteName quotes a name for a shown command; a name not known yet is
// shown as it is.
func quoteName(s string, known bool) string {
	if !known || s == engine.UnknownText {
		return s
	}
	return engine.Quote(s)
}

// ref is "Backup velero/nightly".
func ref(kind, ns, name string) string { return kind + " " + ns + "/" + name }

// str, num and strs read status fields; missing fields read as zero.
func str(u *unstructured.Unstructured, path ...string) string {
	if u == nil {
		return ""
	}
	s, _, _ := unstructured.NestedString(u.Object, path...)
	return s
}

func num(u *unstructured.Unstructured, path ...string) int64 {
	if u == nil {
		return 0
	}
	v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
	if !ok {
		return 0
	}
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case float64:
		return int64(n)
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return 0
}

func strs(u *unstructured.Unstructured, path ...string) []string {
	if u == nil {
		return nil
	}
	v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
	if !ok {
		return nil
	}
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// phaseOf is status.phase, "New" when Velero has not set one yet.
func phaseOf(u *unstructured.Unstructured) string {
	if p := str(u, "status", "phase"); p != "" {
		return p
	}
	return "New"
}

// Backup and restore phases (Velero's BackupPhase and RestorePhase).
const (
	PhaseNew              = "New"
	PhaseInProgress       = "InProgress"
	PhaseCompleted        = "Completed"
	PhaseFailed           = "Failed"
	PhasePartiallyFailed  = "PartiallyFailed"
	PhaseFailedValidation = "FailedValidation"
	PhaseDeleting         = "Deleting"
	PhaseEnabled          = "Enabled" // schedules
)

// failedPhase reports phases a backup or restore never leaves except by
// being deleted.
func failedPhase(p string) bool {
	return p == PhaseFailed || p == PhasePartiallyFailed || p == PhaseFailedValidation || p == PhaseDeleting
}

// checkCRDs returns a blocker for each Velero resource the cluster does not
// serve at velero.io/v1: its CRD is missing, not established, or without v1.
// Without the right to read CRDs it asks the resource itself.
func checkCRDs(ctx context.Context, dc dynamic.Interface, ns string, resources ...string) ([]string, error) {
	var out []string
	for _, r := range resources {
		crd := r + "." + Group
		u, err := dc.Resource(crdGVR).Get(ctx, crd, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			out = append(out, fmt.Sprintf("Velero is not installed: CustomResourceDefinition %s is missing (velero install creates it)", crd))
			continue
		case apierrors.IsForbidden(err):
			_, lerr := dc.Resource(schema.GroupVersionResource{Group: Group, Version: Version, Resource: r}).Namespace(ns).List(ctx, metav1.ListOptions{Limit: 1})
			if apierrors.IsNotFound(lerr) {
				out = append(out, fmt.Sprintf("Velero is not installed: the API server does not serve %s/%s %s (CustomResourceDefinition %s)", Group, Version, r, crd))
			} else if lerr != nil {
				return nil, fmt.Errorf("checking Velero's %s: %w", r, lerr)
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("reading CustomResourceDefinition %s: %w", crd, err)
		}
		served := false
		vs, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
		for _, v := range vs {
			m, _ := v.(map[string]any)
			if m["name"] == Version && m["served"] == true {
				served = true
			}
		}
		if !served {
			out = append(out, fmt.Sprintf("CustomResourceDefinition %s does not serve version %s: this Velero is not one runbook knows", crd, Version))
			continue
		}
		if !condTrue(u, "Established") {
			out = append(out, fmt.Sprintf("CustomResourceDefinition %s is not established yet", crd))
		}
	}
	return out, nil
}

func condTrue(u *unstructured.Unstructured, typ string) bool {
	cs, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range cs {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			return m["status"] == "True"
		}
	}
	return false
}

// preflight adds blockers for missing CRDs or a missing Velero namespace;
// ok is false when there are any: nothing further can be read.
func preflight(ctx context.Context, dc dynamic.Interface, ch *engine.Change, ns string, resources ...string) (ok bool, err error) {
	b, err := checkCRDs(ctx, dc, ns, resources...)
	if err != nil {
		return false, err
	}
	if len(b) == 0 {
		nb, err := checkNamespace(ctx, dc, ns)
		if err != nil {
			return false, err
		}
		if nb != "" {
			b = append(b, nb)
		}
	}
	ch.Blockers = append(ch.Blockers, b...)
	return len(b) == 0, nil
}

// checkNamespace is a blocker when Velero's namespace does not exist.
func checkNamespace(ctx context.Context, dc dynamic.Interface, ns string) (string, error) {
	_, err := dc.Resource(namespaceGVR).Get(ctx, ns, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("namespace %s does not exist: is Velero installed in another namespace? (set namespace)", ns), nil
	case err != nil && !apierrors.IsForbidden(err):
		return "", fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	return "", nil
}

// storageLocation checks the BackupStorageLocation a backup would go to:
// the one named, else the one marked default (else one named "default",
// the Velero server's own default). A missing or read-only location is a
// blocker (Velero fails such a backup's validation); one Velero reports
// Unavailable is a blocker when strict (a backup now) and a warning
// otherwise (a schedule's later backups).
func storageLocation(ctx context.Context, dc dynamic.Interface, ns, name string, strict bool) (detail string, warnings, blockers []string, err error) {
	ri := dc.Resource(bslGVR).Namespace(ns)
	var bsl *unstructured.Unstructured
	if name != "" {
		bsl, err = ri.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", nil, []string{fmt.Sprintf("BackupStorageLocation %s/%s does not exist (velero backup-location get lists them)", ns, name)}, nil
		}
		if err != nil {
			return "", nil, nil, fmt.Errorf("reading BackupStorageLocation %s/%s: %w", ns, name, err)
		}
	} else {
		l, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", nil, nil, fmt.Errorf("listing BackupStorageLocations in %s: %w", ns, err)
		}
		items := l.Items
		sort.Slice(items, func(i, j int) bool { return items[i].GetName() < items[j].GetName() })
		for i := range items {
			if d, _, _ := unstructured.NestedBool(items[i].Object, "spec", "default"); d {
				bsl = &items[i]
				break
			}
		}
		if bsl == nil {
			for i := range items {
				if items[i].GetName() == "default" {
					bsl = &items[i]
				}
			}
		}
		if bsl == nil {
			return "", nil, []string{fmt.Sprintf("no BackupStorageLocation in %s is marked default: set storage_location, or mark one (velero backup-location set NAME --default)", ns)}, nil
		}
	}
	bn := bsl.GetName()
	phase := str(bsl, "status", "phase")
	detail = fmt.Sprintf("storage location %s: %s", bn, orText(phase, "not yet validated by Velero"))
	if p := str(bsl, "spec", "provider"); p != "" {
		detail += ", provider " + p
	}
	if m := str(bsl, "spec", "accessMode"); m == "ReadOnly" {
		blockers = append(blockers, fmt.Sprintf("BackupStorageLocation %s/%s is read-only: Velero refuses to back up to it", ns, bn))
	}
	switch phase {
	case "Available":
	case "":
		warnings = append(warnings, fmt.Sprintf("BackupStorageLocation %s/%s has no phase yet: Velero has not validated it", ns, bn))
	default:
		msg := fmt.Sprintf("BackupStorageLocation %s/%s is %s", ns, bn, phase)
		if m := str(bsl, "status", "message"); m != "" {
			msg += ": " + m
		}
		if strict {
			blockers = append(blockers, msg+"; a backup to it would fail")
		} else {
			warnings = append(warnings, msg+"; scheduled backups fail until it is available")
		}
	}
	return detail, warnings, blockers, nil
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// relistPause keeps a watch that keeps failing at once from becoming a busy
// loop; a watch that delivered events is re-listed at once.
var relistPause = time.Second

// errDeleted is returned when the watched object goes away.
var errDeleted = errors.New("was deleted while runbook waited for it")

// watchUntil lists the named object, then watches it from that list's
// resource version, calling seen with every version until seen says done.
// When the watch ends (the server closes it, its resource version expires:
// 410 Gone, the connection drops), it lists again and watches again. The
// wait is bounded by ctx only; the last object seen is returned with any
// error, for the caller's message.
func watchUntil(ctx context.Context, ri dynamic.ResourceInterface, name string, seen func(*unstructured.Unstructured) (bool, error)) (*unstructured.Unstructured, error) {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	var last *unstructured.Unstructured
	var lastErr error
	for {
		if err := ctx.Err(); err != nil {
			return last, err
		}
		l, err := ri.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			// A transient failure (the API server restarting) is retried
			// until the step's time runs out.
			lastErr = fmt.Errorf("listing: %w", err)
			if !sleep(ctx, relistPause) {
				return last, fmt.Errorf("%w; the last attempt to read it failed: %v", ctx.Err(), lastErr)
			}
			continue
		}
		var found *unstructured.Unstructured
		for i := range l.Items {
			if l.Items[i].GetName() == name {
				found = &l.Items[i]
			}
		}
		if found == nil {
			return last, errDeleted
		}
		last = found
		if done, err := seen(found); done || err != nil {
			return last, err
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: l.GetResourceVersion(), AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			lastErr = fmt.Errorf("watching: %w", err)
			if !sleep(ctx, relistPause) {
				return last, fmt.Errorf("%w; the last attempt to read it failed: %v", ctx.Err(), lastErr)
			}
			continue
		}
		done, events, obj, err := drainWatch(ctx, w, name, seen)
		w.Stop()
		if obj != nil {
			last = obj
		}
		if done || err != nil {
			return last, err
		}
		if events == 0 && !sleep(ctx, relistPause) {
			return last, ctx.Err()
		}
	}
}

// drainWatch reads one watch until seen says done, the object is deleted,
// or the watch ends (then done is false and err nil: re-list).
func drainWatch(ctx context.Context, w watch.Interface, name string, seen func(*unstructured.Unstructured) (bool, error)) (done bool, events int, last *unstructured.Unstructured, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, events, last, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, events, last, nil
			}
			switch ev.Type {
			case watch.Error:
				// Expired (410 Gone) or another server-side end: re-list.
				return false, events, last, nil
			case watch.Bookmark:
				continue
			}
			u, isU := ev.Object.(*unstructured.Unstructured)
			if !isU || u.GetName() != name {
				continue
			}
			events++
			if ev.Type == watch.Deleted {
				return true, events, u, errDeleted
			}
			last = u
			if d, err := seen(u); d || err != nil {
				return true, events, last, err
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// waitError is the message of a wait that ended without an outcome.
func waitError(ctx context.Context, err error, what, until, last string) error {
	switch {
	case errors.Is(err, errDeleted):
		return fmt.Errorf("%s %v (last phase seen: %s)", what, errDeleted, last)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		msg := fmt.Sprintf("gave up waiting for %s to be %s when the step's time ran out: last phase seen %s; Velero goes on with it, and a resumed run waits for it again", what, until, last)
		if err != nil && err.Error() != ctx.Err().Error() {
			msg += " (" + strings.TrimPrefix(err.Error(), ctx.Err().Error()+"; ") + ")"
		}
		return errors.New(msg)
	case ctx.Err() != nil:
		return fmt.Errorf("stopped waiting for %s to be %s (interrupted): last phase seen %s; Velero goes on with it", what, until, last)
	}
	return err
}

func jsonText(v any) string {
	if v == nil {
		return "(unset)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// toUnstructured converts a typed value (a label selector) to JSON-shaped
// values.
func toUnstructured(v any) (map[string]any, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(v)
}

// timeText returns an RFC 3339 status time as given, "" when unset.
func timeText(u *unstructured.Unstructured, field string) string {
	return str(u, "status", field)
}

// strList converts strings for an unstructured object.
func strList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// listArg is a list argument without empty results: nil when unset.
func listArg(a engine.Args, name string) []string {
	if !a.Set(name) {
		return nil
	}
	return a.Strings(name)
}
