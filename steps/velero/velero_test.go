package velero

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

const runID = "20260101-000000-abcd1234"

func init() { relistPause = 10 * time.Millisecond }

// newFake is a dynamic client holding objs, able to list every resource
// these kinds read.
func newFake(objs ...runtime.Object) *fake.FakeDynamicClient {
	return fake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		backupsGVR: "BackupList", restoresGVR: "RestoreList", schedulesGVR: "ScheduleList", bslGVR: "BackupStorageLocationList",
		crdGVR: "CustomResourceDefinitionList", namespaceGVR: "NamespaceList",
	}, objs...)
}

func obj(apiVersion, kind, ns, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range fields {
		u.Object[k] = v
	}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

func crd(resource string, established bool) *unstructured.Unstructured {
	st := "True"
	if !established {
		st = "False"
	}
	return obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", resource+".velero.io", map[string]any{
		"spec":   map[string]any{"group": "velero.io", "versions": []any{map[string]any{"name": "v1", "served": true, "storage": true}}},
		"status": map[string]any{"conditions": []any{map[string]any{"type": "Established", "status": st}}},
	})
}

func namespace(name string) *unstructured.Unstructured {
	return obj("v1", "Namespace", "", name, nil)
}

func bsl(name string, isDefault bool, phase string, mut ...func(*unstructured.Unstructured)) *unstructured.Unstructured {
	u := obj("velero.io/v1", "BackupStorageLocation", "velero", name, map[string]any{
		"spec": map[string]any{"provider": "aws", "default": isDefault},
	})
	if phase != "" {
		u.Object["status"] = map[string]any{"phase": phase}
	}
	for _, m := range mut {
		m(u)
	}
	return u
}

// installed is a cluster where Velero is installed with an Available
// default location.
func installed(extra ...runtime.Object) []runtime.Object {
	out := []runtime.Object{
		crd("backups", true), crd("restores", true), crd("schedules", true), crd("backupstoragelocations", true),
		namespace("velero"), bsl("default", true, "Available"),
	}
	return append(out, extra...)
}

// velero is a Backup, Restore or Schedule; ours adds runbook's label.
func velero(kind, name string, ours bool, status map[string]any) *unstructured.Unstructured {
	u := obj("velero.io/v1", kind, "velero", name, map[string]any{"spec": map[string]any{}})
	if ours {
		u.SetLabels(map[string]string{ManagedByLabel: managedBy})
		u.SetAnnotations(map[string]string{AnnRunID: "20250101-000000-00000000"})
	}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

type recorder struct {
	mu     sync.Mutex
	events []engine.Event
}

func (r *recorder) emit(e engine.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) messages() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		b.WriteString(e.Type + ": " + e.Message + "\n")
	}
	return b.String()
}

// request builds a request for a kind from explicit arguments; the rest
// take their defaults or are null.
func request(s *plans.KindSchema, step string, args map[string]cty.Value, rec *recorder) *engine.Request {
	o := map[string]cty.Value{}
	for _, a := range s.Args {
		switch v, ok := args[a.Name]; {
		case ok:
			o[a.Name] = v
		case a.Default != cty.NilVal:
			o[a.Name] = a.Default
		default:
			o[a.Name] = cty.NullVal(a.Type)
		}
	}
	if rec == nil {
		rec = &recorder{}
	}
	return &engine.Request{Address: "step." + step, Step: &plans.Step{Kind: s.Name, Name: step, Schema: s},
		Args: engine.Args{V: cty.ObjectVal(o)}, Config: &plans.StepConfig{Timeout: time.Minute},
		Env: &engine.Env{RunID: runID, Emit: rec.emit}}
}

func ctyList(ss ...string) cty.Value {
	vs := make([]cty.Value, len(ss))
	for i, s := range ss {
		vs[i] = cty.StringVal(s)
	}
	return cty.ListVal(vs)
}

func contains(t *testing.T, what string, list []string, want string) {
	t.Helper()
	for _, l := range list {
		if strings.Contains(l, want) {
			return
		}
	}
	t.Errorf("%s: no line contains %q; got %q", what, want, list)
}

func TestBackupPlan(t *testing.T) {
	forbidCRDs := func(dc *fake.FakeDynamicClient) {
		dc.PrependReactor("get", "customresourcedefinitions", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}, "", errors.New("no"))
		})
	}
	tests := []struct {
		name     string
		objs     []runtime.Object
		args     map[string]cty.Value
		react    func(*fake.FakeDynamicClient)
		offline  bool
		action   engine.Action
		summary  string
		blockers []string
		warnings []string
		details  []string
		phase    string // a known phase output
	}{
		{name: "CRDs missing", objs: nil, action: engine.ActionChange,
			blockers: []string{"Velero is not installed: CustomResourceDefinition backups.velero.io is missing", "CustomResourceDefinition backupstoragelocations.velero.io is missing"}},
		{name: "CRD not established", objs: []runtime.Object{crd("backups", false), crd("backupstoragelocations", true), namespace("velero")}, action: engine.ActionChange,
			blockers: []string{"CustomResourceDefinition backups.velero.io is not established yet"}},
		{name: "CRDs unreadable, resource not served", react: func(dc *fake.FakeDynamicClient) {
			forbidCRDs(dc)
			dc.PrependReactor("list", "backups", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "velero.io", Resource: "backups"}, "")
			})
		}, objs: installed(), action: engine.ActionChange,
			blockers: []string{"the API server does not serve velero.io/v1 backups (CustomResourceDefinition backups.velero.io)"}},
		{name: "CRDs unreadable, resources served", react: forbidCRDs, objs: installed(), action: engine.ActionChange,
			summary: "create Velero Backup velero/backup-" + runID + " of all namespaces", details: []string{"storage location default: Available"}},
		{name: "Velero namespace missing", objs: []runtime.Object{crd("backups", true), crd("backupstoragelocations", true)}, action: engine.ActionChange,
			blockers: []string{"namespace velero does not exist"}},
		{name: "ready", objs: installed(), action: engine.ActionChange,
			args:    map[string]cty.Value{"name": cty.StringVal("nightly"), "include_namespaces": ctyList("app"), "ttl": cty.StringVal("720h"), "snapshot_volumes": cty.False},
			summary: "create Velero Backup velero/nightly of namespaces app",
			details: []string{"equivalent: velero backup create nightly --include-namespaces=app --ttl=720h0m0s --snapshot-volumes=false --wait", "storage location default: Available, provider aws", "for at most the step's timeout, 1m0s"}},
		{name: "offline", offline: true, action: engine.ActionChange,
			warnings: []string{"offline: Velero's CRDs, its storage location and existing backups were not checked"}},
		{name: "existing Completed backup of ours is a no-op", action: engine.ActionNoOp, phase: "Completed",
			args:    map[string]cty.Value{"name": cty.StringVal("nightly")},
			objs:    installed(velero("Backup", "nightly", true, map[string]any{"phase": "Completed", "progress": map[string]any{"totalItems": int64(10), "itemsBackedUp": int64(10)}})),
			summary: "Backup velero/nightly is already Completed (10 of 10 items backed up)"},
		{name: "existing Completed backup of someone else", action: engine.ActionChange,
			args:     map[string]cty.Value{"name": cty.StringVal("nightly")},
			objs:     installed(velero("Backup", "nightly", false, map[string]any{"phase": "Completed"})),
			blockers: []string{"Backup velero/nightly exists (phase Completed) and was not created by runbook"}},
		{name: "existing Failed backup of ours", action: engine.ActionChange,
			args:     map[string]cty.Value{"name": cty.StringVal("nightly")},
			objs:     installed(velero("Backup", "nightly", true, map[string]any{"phase": "Failed", "failureReason": "bucket gone"})),
			blockers: []string{"Backup velero/nightly failed (phase Failed): bucket gone", "delete it (velero backup delete nightly) or choose another name"}},
		{name: "existing PartiallyFailed backup of ours", action: engine.ActionChange,
			args:     map[string]cty.Value{"name": cty.StringVal("nightly")},
			objs:     installed(velero("Backup", "nightly", true, map[string]any{"phase": "PartiallyFailed", "errors": int64(2)})),
			blockers: []string{"partially failed (phase PartiallyFailed): 2 errors"}},
		{name: "existing backup of ours being deleted", action: engine.ActionChange,
			args:     map[string]cty.Value{"name": cty.StringVal("nightly")},
			objs:     installed(velero("Backup", "nightly", true, map[string]any{"phase": "Deleting"})),
			blockers: []string{"Backup velero/nightly is being deleted (phase Deleting): run again once Velero has deleted it, or choose another name"}},
		{name: "existing InProgress backup of ours is waited for", action: engine.ActionChange,
			args:    map[string]cty.Value{"name": cty.StringVal("nightly")},
			objs:    installed(velero("Backup", "nightly", true, map[string]any{"phase": "InProgress"})),
			summary: "wait for Backup velero/nightly, created earlier by runbook and now InProgress", details: []string{"created by runbook run 20250101-000000-00000000"}},
		{name: "no default location", action: engine.ActionChange,
			objs:     []runtime.Object{crd("backups", true), crd("backupstoragelocations", true), namespace("velero"), bsl("s3", false, "Available")},
			blockers: []string{"no BackupStorageLocation in velero is marked default"}},
		{name: "named location missing", action: engine.ActionChange, objs: installed(),
			args:     map[string]cty.Value{"storage_location": cty.StringVal("offsite")},
			blockers: []string{"BackupStorageLocation velero/offsite does not exist"}},
		{name: "location unavailable", action: engine.ActionChange,
			objs: []runtime.Object{crd("backups", true), crd("backupstoragelocations", true), namespace("velero"), bsl("default", true, "Unavailable", func(u *unstructured.Unstructured) {
				u.Object["status"].(map[string]any)["message"] = "bucket not found"
			})},
			blockers: []string{"BackupStorageLocation velero/default is Unavailable: bucket not found; a backup to it would fail"}},
		{name: "location read-only", action: engine.ActionChange,
			objs: []runtime.Object{crd("backups", true), crd("backupstoragelocations", true), namespace("velero"), bsl("default", true, "Available", func(u *unstructured.Unstructured) {
				u.Object["spec"].(map[string]any)["accessMode"] = "ReadOnly"
			})},
			blockers: []string{"BackupStorageLocation velero/default is read-only"}},
		{name: "location not validated yet", action: engine.ActionChange,
			objs:     []runtime.Object{crd("backups", true), crd("backupstoragelocations", true), namespace("velero"), bsl("default", true, "")},
			warnings: []string{"BackupStorageLocation velero/default has no phase yet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := newFake(tt.objs...)
			if tt.react != nil {
				tt.react(dc)
			}
			req := request(backupSchema, "backup", tt.args, nil)
			req.Env.Offline = tt.offline
			ch, err := Backup{dyn: dc}.Plan(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Action != tt.action {
				t.Errorf("action %s, want %s (%s; blockers %q)", ch.Action, tt.action, ch.Summary, ch.Blockers)
			}
			if tt.summary != "" && ch.Summary != tt.summary {
				t.Errorf("summary %q, want %q", ch.Summary, tt.summary)
			}
			for _, b := range tt.blockers {
				contains(t, "blockers", ch.Blockers, b)
			}
			if len(tt.blockers) == 0 && len(ch.Blockers) > 0 {
				t.Errorf("unexpected blockers %q", ch.Blockers)
			}
			for _, w := range tt.warnings {
				contains(t, "warnings", ch.Warnings, w)
			}
			for _, d := range tt.details {
				contains(t, "details", ch.Details, d)
			}
			if tt.offline && len(dc.Actions()) > 0 {
				t.Errorf("an offline plan called the API: %v", dc.Actions())
			}
			for _, a := range dc.Actions() {
				if v := a.GetVerb(); v != "get" && v != "list" {
					t.Errorf("Plan is read-only, but it called %s %s", v, a.GetResource().Resource)
				}
			}
			if tt.phase != "" {
				if !ch.Outputs.IsWhollyKnown() || ch.Outputs.GetAttr("phase").AsString() != tt.phase {
					t.Errorf("outputs %#v, want phase %s known", ch.Outputs, tt.phase)
				}
			} else if ch.Outputs.GetAttr("name").IsKnown() {
				t.Errorf("name output known before the backup exists: a restore planned from it would find no backup")
			}
		})
	}
}

// status builds a Backup status with Velero's counters.
func status(phase string, done, total int64, extra map[string]any) map[string]any {
	s := map[string]any{"phase": phase, "progress": map[string]any{"totalItems": total, "itemsBackedUp": done, "itemsRestored": done}}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

// scripted returns a watch reactor that serves one scripted watcher per
// watch call; before each watch, at (if set) may change the tracker.
func scripted(dc *fake.FakeDynamicClient, resource string, at func(call int), watchers ...[]watch.Event) *int {
	calls := 0
	dc.PrependWatchReactor(resource, func(k8stesting.Action) (bool, watch.Interface, error) {
		i := calls
		calls++
		if at != nil {
			at(i)
		}
		w := watch.NewRaceFreeFake()
		if i >= len(watchers) {
			return true, w, nil // quiet: nothing more happens
		}
		for _, ev := range watchers[i] {
			if ev.Type == closed.Type {
				w.Stop()
				break
			}
			w.Action(ev.Type, ev.Object)
		}
		return true, w, nil
	})
	return &calls
}

// closed ends a scripted watch: the server closed it.
var closed = watch.Event{Type: "CLOSED"}

func ev(typ watch.EventType, kind, name string, st map[string]any) watch.Event {
	return watch.Event{Type: typ, Object: velero(kind, name, true, st)}
}

func gone() watch.Event {
	return watch.Event{Type: watch.Error, Object: &metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired, Message: "too old resource version"}}
}

func TestBackupApply(t *testing.T) {
	tests := []struct {
		name     string
		objs     []runtime.Object
		watchers [][]watch.Event
		at       func(dc *fake.FakeDynamicClient) func(int)
		react    func(dc *fake.FakeDynamicClient)
		timeout  time.Duration
		wantErr  string
		phase    string
		items    int64
		creates  int
		lists    int // at least
	}{
		{name: "InProgress then Completed", creates: 1, phase: "Completed", items: 10, watchers: [][]watch.Event{{
			ev(watch.Modified, "Backup", "nightly", status("InProgress", 3, 10, nil)),
			ev(watch.Modified, "Backup", "nightly", status("Completed", 10, 10, map[string]any{"completionTimestamp": "2026-01-01T00:05:00Z"})),
		}}},
		{name: "Failed", creates: 1, wantErr: "Backup velero/nightly failed (phase Failed): error getting backup store: bucket not found; 1 errors, 0 warnings; see velero backup describe nightly --details", watchers: [][]watch.Event{{
			ev(watch.Modified, "Backup", "nightly", status("InProgress", 3, 10, nil)),
			ev(watch.Modified, "Backup", "nightly", status("Failed", 3, 10, map[string]any{"failureReason": "error getting backup store: bucket not found", "errors": int64(1)})),
		}}},
		{name: "PartiallyFailed", creates: 1, wantErr: "Backup velero/nightly partially failed (phase PartiallyFailed): 2 errors, 1 warnings; see velero backup describe nightly --details and velero backup logs nightly", watchers: [][]watch.Event{{
			ev(watch.Modified, "Backup", "nightly", status("PartiallyFailed", 8, 10, map[string]any{"errors": int64(2), "warnings": int64(1)})),
		}}},
		{name: "FailedValidation", creates: 1, wantErr: "Backup velero/nightly failed validation (phase FailedValidation): an existing backup storage location wasn't specified at backup creation time and the default 'default' wasn't found", watchers: [][]watch.Event{{
			ev(watch.Modified, "Backup", "nightly", map[string]any{"phase": "FailedValidation", "validationErrors": []any{"an existing backup storage location wasn't specified at backup creation time and the default 'default' wasn't found"}}),
		}}},
		{name: "watch expires: re-list finds it Completed", creates: 1, phase: "Completed", items: 7, lists: 2,
			at: func(dc *fake.FakeDynamicClient) func(int) {
				return func(call int) {
					if call == 0 {
						u := velero("Backup", "nightly", true, status("Completed", 7, 7, nil))
						if err := dc.Tracker().Update(backupsGVR, u, "velero"); err != nil {
							panic(err)
						}
					}
				}
			},
			watchers: [][]watch.Event{{ev(watch.Modified, "Backup", "nightly", status("InProgress", 1, 7, nil)), gone()}}},
		{name: "watch closes quietly: re-list and watch again", creates: 1, phase: "Completed", items: 4, lists: 2,
			watchers: [][]watch.Event{{closed}, {ev(watch.Modified, "Backup", "nightly", status("Completed", 4, 4, nil))}}},
		{name: "the API server fails a list: retried", creates: 1, phase: "Completed", items: 2, lists: 2,
			react: func(dc *fake.FakeDynamicClient) {
				failed := false
				dc.PrependReactor("list", "backups", func(k8stesting.Action) (bool, runtime.Object, error) {
					if failed {
						return false, nil, nil
					}
					failed = true
					return true, nil, apierrors.NewServiceUnavailable("apiserver restarting")
				})
			},
			watchers: [][]watch.Event{{ev(watch.Modified, "Backup", "nightly", status("Completed", 2, 2, nil))}}},
		{name: "the API server keeps failing: the timeout says so", creates: 1, timeout: 300 * time.Millisecond,
			react: func(dc *fake.FakeDynamicClient) {
				dc.PrependReactor("list", "backups", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewServiceUnavailable("apiserver restarting")
				})
			},
			wantErr: "last phase seen New (Velero has not picked it up: is the Velero server running?); Velero goes on with it, and a resumed run waits for it again (the last attempt to read it failed: listing: apiserver restarting)"},
		{name: "timeout says what it waited for and the last phase", creates: 1, timeout: 300 * time.Millisecond,
			wantErr:  "gave up waiting for Backup velero/nightly to be Completed when the step's time ran out: last phase seen InProgress (3 of 10 items backed up)",
			watchers: [][]watch.Event{{ev(watch.Modified, "Backup", "nightly", status("InProgress", 3, 10, nil))}}},
		{name: "timeout before Velero picks it up", creates: 1, timeout: 300 * time.Millisecond,
			wantErr: "last phase seen New (Velero has not picked it up: is the Velero server running?)"},
		{name: "deleted while waiting", creates: 1, wantErr: "Backup velero/nightly was deleted while runbook waited for it (last phase seen: InProgress",
			watchers: [][]watch.Event{{ev(watch.Modified, "Backup", "nightly", status("InProgress", 3, 10, nil)), ev(watch.Deleted, "Backup", "nightly", status("InProgress", 3, 10, nil))}}},
		{name: "an InProgress backup of ours is adopted, not recreated", creates: 0, phase: "Completed", items: 5,
			objs:     []runtime.Object{velero("Backup", "nightly", true, status("InProgress", 2, 5, nil))},
			watchers: [][]watch.Event{{ev(watch.Modified, "Backup", "nightly", status("Completed", 5, 5, nil))}}},
		{name: "a Completed backup of ours is adopted and done at once", creates: 0, phase: "Completed", items: 5,
			objs: []runtime.Object{velero("Backup", "nightly", true, status("Completed", 5, 5, nil))}},
		{name: "someone else's backup is not adopted", creates: 0, wantErr: "Backup velero/nightly exists and was not created by runbook (no app.kubernetes.io/managed-by=runbook label): refusing to adopt it",
			objs: []runtime.Object{velero("Backup", "nightly", false, status("InProgress", 2, 5, nil))}},
		{name: "a failed backup of ours is not waited for", creates: 0, wantErr: "Backup velero/nightly failed (phase Failed)",
			objs: []runtime.Object{velero("Backup", "nightly", true, status("Failed", 2, 5, nil))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := newFake(append(installed(), tt.objs...)...)
			var at func(int)
			if tt.at != nil {
				at = tt.at(dc)
			}
			scripted(dc, "backups", at, tt.watchers...)
			if tt.react != nil {
				tt.react(dc)
			}
			rec := &recorder{}
			req := request(backupSchema, "backup", map[string]cty.Value{"name": cty.StringVal("nightly"), "include_namespaces": ctyList("app"), "ttl": cty.StringVal("720h")}, rec)
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			out, err := Backup{dyn: dc}.Apply(ctx, req, nil)
			creates, lists := 0, 0
			for _, a := range dc.Actions() {
				if a.GetResource().Resource != "backups" {
					continue
				}
				switch a.GetVerb() {
				case "create":
					creates++
					c := a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
					if !ours(c) || c.GetAnnotations()[AnnRunID] != runID || c.GetAnnotations()[AnnStep] != "step.backup" {
						t.Errorf("created without runbook's label and annotations: %v %v", c.GetLabels(), c.GetAnnotations())
					}
					if got := jsonText(c.Object["spec"]); got != `{"includedNamespaces":["app"],"ttl":"720h0m0s"}` {
						t.Errorf("spec %s", got)
					}
				case "list":
					lists++
				}
			}
			if creates != tt.creates {
				t.Errorf("%d creates, want %d", creates, tt.creates)
			}
			if lists < tt.lists {
				t.Errorf("%d lists, want at least %d", lists, tt.lists)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v\nwant %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\nevents:\n%s", err, rec.messages())
			}
			if p := out.GetAttr("phase").AsString(); p != tt.phase {
				t.Errorf("phase %s, want %s", p, tt.phase)
			}
			if n, _ := out.GetAttr("items_backed_up").AsBigFloat().Int64(); n != tt.items {
				t.Errorf("items_backed_up %d, want %d", n, tt.items)
			}
			if out.GetAttr("name").AsString() != "nightly" {
				t.Errorf("name output %s", out.GetAttr("name").AsString())
			}
		})
	}
}

func TestBackupApplyDefaultNameAndNoWait(t *testing.T) {
	dc := newFake(installed()...)
	req := request(backupSchema, "pre_upgrade", map[string]cty.Value{"wait": cty.False}, nil)
	out, err := Backup{dyn: dc}.Apply(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "pre-upgrade-" + runID
	if out.GetAttr("name").AsString() != want || out.GetAttr("phase").AsString() != "New" {
		t.Errorf("outputs %#v, want name %s phase New", out, want)
	}
	if _, err := dc.Resource(backupsGVR).Namespace("velero").Get(context.Background(), want, metav1.GetOptions{}); err != nil {
		t.Errorf("no Backup %s: %v", want, err)
	}
	// The plan after it sees the same name: a resume finds the Backup.
	ch, err := Backup{dyn: dc}.Plan(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Action != engine.ActionNoOp {
		t.Errorf("plan after apply (wait = false): %s %s", ch.Action, ch.Summary)
	}
}

func TestDefaultName(t *testing.T) {
	tests := []struct{ step, want string }{
		{"backup", "backup-" + runID},
		{"pre_upgrade", "pre-upgrade-" + runID},
		{"Nightly_Backup_Of_Everything_In_The_Whole_Cluster_Please", "nightly-backup-of-everything-in-the-wh-" + runID},
	}
	for _, tt := range tests {
		got := defaultName(tt.step, runID)
		if got != tt.want || len(got) > 63 {
			t.Errorf("defaultName(%q) = %q (%d), want %q", tt.step, got, len(got), tt.want)
		}
	}
	// Without a run id (runbook plan), the name is not known yet.
	req := request(backupSchema, "backup", nil, nil)
	if n, known := objectName(req); !known || n != "backup-"+runID {
		t.Errorf("objectName = %q, %v", n, known)
	}
	// In a phase, one object per node.
	req.Node = &plans.Node{Name: "cp-1"}
	if n, known := objectName(req); !known || n != "backup-cp-1-"+runID {
		t.Errorf("objectName in a phase = %q, %v", n, known)
	}
	req.Node = nil
	req.Env.RunID = ""
	if n, known := objectName(req); known || n != "backup-<run id>" {
		t.Errorf("objectName without a run id = %q, %v", n, known)
	}
}

func TestRestorePlan(t *testing.T) {
	completed := velero("Backup", "nightly", true, status("Completed", 10, 10, map[string]any{"completionTimestamp": "2026-01-01T00:05:00Z", "expiration": "2026-01-31T00:05:00Z"}))
	completed.Object["spec"] = map[string]any{"includedNamespaces": []any{"app"}}
	tests := []struct {
		name     string
		objs     []runtime.Object
		args     map[string]cty.Value
		action   engine.Action
		blockers []string
		warnings []string
		details  []string
	}{
		{name: "CRDs missing", action: engine.ActionChange, blockers: []string{"CustomResourceDefinition restores.velero.io is missing", "CustomResourceDefinition backups.velero.io is missing"}},
		{name: "backup missing", objs: installed(), action: engine.ActionChange, blockers: []string{"Backup velero/nightly does not exist (velero backup get lists the backups): nothing to restore from"}},
		{name: "backup InProgress", objs: installed(velero("Backup", "nightly", true, status("InProgress", 3, 10, nil))), action: engine.ActionChange,
			blockers: []string{"Backup velero/nightly is InProgress (3 of 10 items backed up), not Completed: restore only from a Completed backup"}},
		{name: "backup PartiallyFailed", objs: installed(velero("Backup", "nightly", false, status("PartiallyFailed", 3, 10, nil))), action: engine.ActionChange,
			blockers: []string{"Backup velero/nightly is PartiallyFailed (3 of 10 items backed up), not Completed"}},
		{name: "backup Completed, drill namespace new", objs: installed(completed), action: engine.ActionChange,
			details: []string{
				"equivalent: velero restore create drill --from-backup=nightly --namespace-mappings=app:app-drill --existing-resource-policy=none --wait",
				"from Backup velero/nightly: Completed 2026-01-01T00:05:00Z, 10 items, namespaces app, expires 2026-01-31T00:05:00Z",
				"namespace app-drill does not exist: Velero creates it"}},
		{name: "drill namespace exists", objs: installed(completed, namespace("app-drill")), action: engine.ActionChange,
			warnings: []string{"namespace app-drill exists: objects already in it are left as they are and counted as warnings (existing_resource_policy = none)"}},
		{name: "backup not known yet", objs: installed(), action: engine.ActionChange, args: map[string]cty.Value{"from_backup": cty.UnknownVal(cty.String)},
			details: []string{"velero restore create drill --from-backup=(known after apply)", "the backup is known once an earlier step has run"}},
		{name: "a Completed restore of ours is a no-op", objs: installed(velero("Restore", "drill", true, status("Completed", 10, 10, nil))), action: engine.ActionNoOp},
		{name: "a Failed restore of ours blocks", objs: installed(completed, velero("Restore", "drill", true, status("Failed", 1, 10, nil))), action: engine.ActionChange,
			blockers: []string{"Restore velero/drill failed (phase Failed)", "velero restore delete drill"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := newFake(tt.objs...)
			args := map[string]cty.Value{"name": cty.StringVal("drill"), "from_backup": cty.StringVal("nightly"),
				"namespace_mappings": cty.MapVal(map[string]cty.Value{"app": cty.StringVal("app-drill")}), "existing_resource_policy": cty.StringVal("none")}
			for k, v := range tt.args {
				args[k] = v
			}
			ch, err := Restore{dyn: dc}.Plan(context.Background(), request(restoreSchema, "drill", args, nil))
			if err != nil {
				t.Fatal(err)
			}
			if ch.Action != tt.action {
				t.Errorf("action %s, want %s (%s; %q)", ch.Action, tt.action, ch.Summary, ch.Blockers)
			}
			for _, b := range tt.blockers {
				contains(t, "blockers", ch.Blockers, b)
			}
			if len(tt.blockers) == 0 && len(ch.Blockers) > 0 {
				t.Errorf("unexpected blockers %q", ch.Blockers)
			}
			for _, w := range tt.warnings {
				contains(t, "warnings", ch.Warnings, w)
			}
			for _, d := range tt.details {
				contains(t, "details", ch.Details, d)
			}
		})
	}
}

func TestRestoreApply(t *testing.T) {
	tests := []struct {
		name     string
		watchers [][]watch.Event
		wantErr  string
		items    int64
	}{
		{name: "Completed", items: 12, watchers: [][]watch.Event{{
			ev(watch.Modified, "Restore", "drill", status("InProgress", 5, 12, nil)),
			ev(watch.Modified, "Restore", "drill", status("Completed", 12, 12, map[string]any{"warnings": int64(1)})),
		}}},
		{name: "Failed", wantErr: "Restore velero/drill failed (phase Failed); 0 errors, 0 warnings; see velero restore describe drill --details and velero restore logs drill", watchers: [][]watch.Event{{
			ev(watch.Modified, "Restore", "drill", status("Failed", 0, 12, nil)),
		}}},
		{name: "PartiallyFailed", wantErr: "Restore velero/drill partially failed (phase PartiallyFailed): 3 errors, 0 warnings", watchers: [][]watch.Event{{
			ev(watch.Modified, "Restore", "drill", status("PartiallyFailed", 9, 12, map[string]any{"errors": int64(3)})),
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := newFake(installed(velero("Backup", "nightly", true, status("Completed", 12, 12, nil)))...)
			scripted(dc, "restores", nil, tt.watchers...)
			req := request(restoreSchema, "drill", map[string]cty.Value{"name": cty.StringVal("drill"), "from_backup": cty.StringVal("nightly"),
				"namespace_mappings": cty.MapVal(map[string]cty.Value{"app": cty.StringVal("app-drill")}), "restore_pvs": cty.True}, nil)
			out, err := Restore{dyn: dc}.Apply(context.Background(), req, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v\nwant %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := out.GetAttr("items_restored").AsBigFloat().Int64(); n != tt.items || out.GetAttr("phase").AsString() != "Completed" {
				t.Errorf("outputs %#v", out)
			}
			u, err := dc.Resource(restoresGVR).Namespace("velero").Get(context.Background(), "drill", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := jsonText(u.Object["spec"]); got != `{"backupName":"nightly","namespaceMapping":{"app":"app-drill"},"restorePVs":true}` {
				t.Errorf("spec %s", got)
			}
		})
	}
}

func TestValidateCron(t *testing.T) {
	tests := []struct{ spec, wantErr string }{
		{"0 0 * * *", ""},
		{"*/15 * * * *", ""},
		{"0 3 * * MON-FRI", ""},
		{"0 0 1,15 * ?", ""},
		{"30 2 * jan-mar sun", ""},
		{"0 0-23/2 * * *", ""},
		{"5/10 * * * *", ""},
		{"@daily", ""},
		{"@every 6h", ""},
		{"CRON_TZ=Asia/Seoul 0 0 * * *", ""},
		{"", "the schedule is empty"},
		{"0 0 * *", `"0 0 * *" has 4 fields: a cron schedule has 5 fields, minute hour day-of-month month day-of-week`},
		{"0 0 0 * * *", "has 6 fields"},
		{"61 0 * * *", `minute field "61": 61 is outside 0-59`},
		{"0 24 * * *", `hour field "24": 24 is outside 0-23`},
		{"0 0 0 * *", `day of month field "0": 0 is outside 1-31`},
		{"0 0 * 13 *", `month field "13": 13 is outside 1-12`},
		{"0 0 * * 7", `day of week field "7": 7 is outside 0-6`},
		{"0 0 * * FUNDAY", `"FUNDAY" is neither a number from 0 to 6 nor a name`},
		{"*/0 * * * *", `step "0" is not a positive number`},
		{"5-1 * * * *", "range 5-1 ends before it begins"},
		{"0,,1 * * * *", "an empty list element"},
		{"@fortnightly", "is not a descriptor Velero knows"},
		{"@every soon", "@every takes a positive duration"},
		{"TZ=", "a time zone but no schedule"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			err := validateCron(tt.spec)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("%q: %v", tt.spec, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("%q: err = %v, want %q", tt.spec, err, tt.wantErr)
			}
		})
	}
	// The schema's check reports it on the argument, at validate time.
	args := request(scheduleSchema, "daily", map[string]cty.Value{"name": cty.StringVal("daily"), "schedule": cty.StringVal("0 0 * *")}, nil).Args.V
	errs := scheduleSchema.Check(args)
	if len(errs) != 1 || errs[0].Arg != "schedule" || !strings.Contains(errs[0].Detail, "has 4 fields") {
		t.Errorf("Check = %+v", errs)
	}
	// And Plan refuses it with the same words.
	_, err := Schedule{dyn: newFake(installed()...)}.Plan(context.Background(), request(scheduleSchema, "daily", map[string]cty.Value{"name": cty.StringVal("daily"), "schedule": cty.StringVal("0 0 * * 8")}, nil))
	if err == nil || !strings.Contains(err.Error(), `schedule: "0 0 * * 8": day of week field "8": 8 is outside 0-6`) {
		t.Errorf("Plan err = %v", err)
	}
}

func schedule(name string, ours bool, spec map[string]any, st map[string]any) *unstructured.Unstructured {
	u := velero("Schedule", name, ours, st)
	u.Object["spec"] = spec
	return u
}

func TestSchedulePlan(t *testing.T) {
	args := map[string]cty.Value{"name": cty.StringVal("daily"), "schedule": cty.StringVal("0 0 * * *"), "include_namespaces": ctyList("app"), "ttl": cty.StringVal("720h")}
	asPlanned := map[string]any{"schedule": "0 0 * * *", "template": map[string]any{"includedNamespaces": []any{"app"}, "ttl": "720h"}}
	tests := []struct {
		name     string
		objs     []runtime.Object
		action   engine.Action
		summary  string
		details  []string
		blockers []string
	}{
		{name: "CRDs missing", action: engine.ActionChange, blockers: []string{"CustomResourceDefinition schedules.velero.io is missing"}},
		{name: "new", objs: installed(), action: engine.ActionChange, summary: `create Velero Schedule velero/daily: "0 0 * * *", backing up namespaces app`,
			details: []string{`equivalent: velero schedule create daily --schedule='0 0 * * *' --include-namespaces=app --ttl=720h0m0s`}},
		{name: "as planned (720h is 720h0m0s)", objs: installed(schedule("daily", true, asPlanned, map[string]any{"phase": "Enabled", "lastBackup": "2026-01-01T00:00:00Z"})), action: engine.ActionNoOp,
			summary: "Velero Schedule velero/daily is as planned (phase Enabled, last backup 2026-01-01T00:00:00Z)"},
		{name: "changed", objs: installed(schedule("daily", true, map[string]any{"schedule": "0 1 * * *", "paused": true, "template": map[string]any{"includedNamespaces": []any{"app"}, "ttl": "168h0m0s", "hooks": map[string]any{}}}, map[string]any{"phase": "Enabled"})),
			action: engine.ActionChange, summary: "update Velero Schedule velero/daily: 3 field(s)",
			details: []string{`spec.schedule: "0 1 * * *" -> "0 0 * * *"`, "spec.paused: true -> false", `spec.template.ttl: "168h0m0s" -> "720h0m0s"`, "other fields of the Schedule (hooks, ...) are kept"}},
		{name: "someone else's", objs: installed(schedule("daily", false, asPlanned, nil)), action: engine.ActionChange,
			blockers: []string{"Schedule velero/daily exists and was not created by runbook"}},
		{name: "FailedValidation is recreated", objs: installed(schedule("daily", true, asPlanned, map[string]any{"phase": "FailedValidation", "validationErrors": []any{"invalid schedule: bad"}})),
			action: engine.ActionChange, summary: "recreate Velero Schedule velero/daily"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := newFake(tt.objs...)
			ch, err := Schedule{dyn: dc}.Plan(context.Background(), request(scheduleSchema, "daily", args, nil))
			if err != nil {
				t.Fatal(err)
			}
			if ch.Action != tt.action {
				t.Errorf("action %s, want %s (%s; %q)", ch.Action, tt.action, ch.Summary, ch.Blockers)
			}
			if tt.summary != "" && !strings.HasPrefix(ch.Summary, tt.summary) {
				t.Errorf("summary %q, want %q", ch.Summary, tt.summary)
			}
			for _, d := range tt.details {
				contains(t, "details", ch.Details, d)
			}
			for _, b := range tt.blockers {
				contains(t, "blockers", ch.Blockers, b)
			}
			if len(tt.blockers) == 0 && len(ch.Blockers) > 0 {
				t.Errorf("unexpected blockers %q", ch.Blockers)
			}
		})
	}
}

func TestScheduleApply(t *testing.T) {
	args := map[string]cty.Value{"name": cty.StringVal("daily"), "schedule": cty.StringVal("0 0 * * *"), "include_namespaces": ctyList("app")}
	tests := []struct {
		name     string
		objs     []runtime.Object
		watchers [][]watch.Event
		wantErr  string
		phase    string
		verbs    string // the write verbs on schedules, in order
		spec     string
	}{
		{name: "created, then Enabled by Velero", phase: "Enabled", verbs: "create",
			watchers: [][]watch.Event{{ev(watch.Modified, "Schedule", "daily", map[string]any{"phase": "Enabled"})}},
			spec:     `{"schedule":"0 0 * * *","template":{"includedNamespaces":["app"]}}`},
		{name: "created, then FailedValidation", verbs: "create", wantErr: "Schedule velero/daily failed Velero's validation (phase FailedValidation): invalid schedule: Expected exactly 5 fields",
			watchers: [][]watch.Event{{ev(watch.Modified, "Schedule", "daily", map[string]any{"phase": "FailedValidation", "validationErrors": []any{"invalid schedule: Expected exactly 5 fields"}})}}},
		{name: "updated, other fields kept", phase: "Enabled", verbs: "update",
			objs: []runtime.Object{schedule("daily", true, map[string]any{"schedule": "0 1 * * *", "useOwnerReferencesInBackup": true, "template": map[string]any{"includedNamespaces": []any{"app", "data"}, "hooks": map[string]any{"resources": []any{}}}}, map[string]any{"phase": "Enabled"})},
			spec: `{"schedule":"0 0 * * *","template":{"hooks":{"resources":[]},"includedNamespaces":["app"]},"useOwnerReferencesInBackup":true}`},
		{name: "FailedValidation is deleted and created again", phase: "Enabled", verbs: "delete,create",
			objs:     []runtime.Object{schedule("daily", true, map[string]any{"schedule": "0 0 * * *"}, map[string]any{"phase": "FailedValidation"})},
			watchers: [][]watch.Event{{ev(watch.Modified, "Schedule", "daily", map[string]any{"phase": "Enabled"})}},
			spec:     `{"schedule":"0 0 * * *","template":{"includedNamespaces":["app"]}}`},
		{name: "someone else's is left alone", wantErr: "refusing to change it",
			objs: []runtime.Object{schedule("daily", false, map[string]any{"schedule": "0 1 * * *"}, nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := newFake(append(installed(), tt.objs...)...)
			scripted(dc, "schedules", nil, tt.watchers...)
			out, err := Schedule{dyn: dc}.Apply(context.Background(), request(scheduleSchema, "daily", args, nil), nil)
			var verbs []string
			for _, a := range dc.Actions() {
				if v := a.GetVerb(); a.GetResource().Resource == "schedules" && v != "get" && v != "list" && v != "watch" {
					verbs = append(verbs, v)
				}
			}
			if tt.verbs != "" && strings.Join(verbs, ",") != tt.verbs {
				t.Errorf("verbs %v, want %s", verbs, tt.verbs)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p := out.GetAttr("phase").AsString(); p != tt.phase {
				t.Errorf("phase %s, want %s", p, tt.phase)
			}
			u, err := dc.Resource(schedulesGVR).Namespace("velero").Get(context.Background(), "daily", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := jsonText(u.Object["spec"]); tt.spec != "" && got != tt.spec {
				t.Errorf("spec %s\nwant %s", got, tt.spec)
			}
			if !ours(u) {
				t.Errorf("the Schedule lost runbook's label")
			}
			// Planned again, it is as planned.
			ch, err := Schedule{dyn: dc}.Plan(context.Background(), request(scheduleSchema, "daily", args, nil))
			if err != nil || ch.Action != engine.ActionNoOp {
				t.Errorf("plan after apply: %v %v %s %q", err, ch.Action, ch.Summary, ch.Details)
			}
		})
	}
}
