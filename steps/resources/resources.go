// Package resources implements backup_resources (every API resource found by
// discovery, one YAML file per object in a tree that diffs well in git) and
// restore_resources (server-side apply of such a tree, after a server-side
// dry-run). It reads and writes files on the machine running runbook.
package resources

import (
	"context"
	"fmt"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// Backup is the backup_resources kind.
type Backup struct{}

// Restore is the restore_resources kind.
type Restore struct{}

var backupSchema = &plans.KindSchema{
	Name:    "backup_resources",
	Summary: "Write every API resource (discovery, dynamic client) as one YAML file per object: <dir>/<namespace or _cluster>/<group>.<kind>/<name>.yaml.",
	Target:  plans.TargetCluster,
	Args: []plans.ArgSchema{
		{Name: "dir", Type: cty.String, Required: true, Doc: "Directory on this machine; created if missing."},
		{Name: "namespaces", Type: cty.List(cty.String), Doc: "Only these namespaces (cluster-scoped resources are still written unless cluster_scoped = false)."},
		{Name: "cluster_scoped", Type: cty.Bool, Default: cty.True, Doc: "Also write cluster-scoped resources (nodes excluded), CRDs included."},
		{Name: "include_secrets", Type: cty.Bool, Default: cty.False, Doc: "Also write Secrets; their data is never logged."},
		{Name: "exclude_kinds", Type: cty.List(cty.String), Default: cty.ListVal([]cty.Value{cty.StringVal("Event"), cty.StringVal("Node"), cty.StringVal("Lease"), cty.StringVal("EndpointSlice"), cty.StringVal("Endpoints")}), Doc: "Kinds never written."},
	},
	Outputs: []plans.OutputSchema{
		{Name: "dir", Type: cty.String, Doc: "The backup directory."},
		{Name: "objects", Type: cty.Number, Doc: "How many objects were written."},
	},
}

var restoreSchema = &plans.KindSchema{
	Name:    "restore_resources",
	Summary: "Server-side apply a tree written by backup_resources, after a server-side dry-run of all of it.",
	Target:  plans.TargetCluster,
	Args: []plans.ArgSchema{
		{Name: "dir", Type: cty.String, Required: true, Doc: "A directory written by backup_resources."},
		{Name: "namespaces", Type: cty.List(cty.String), Doc: "Only these namespaces."},
		{Name: "field_manager", Type: cty.String, Default: cty.StringVal("runbook-restore"), Doc: "Server-side apply field manager."},
	},
	Outputs: []plans.OutputSchema{{Name: "objects", Type: cty.Number, Doc: "How many objects were applied."}},
}

func (Backup) Schema() *plans.KindSchema  { return backupSchema }
func (Restore) Schema() *plans.KindSchema { return restoreSchema }

func scope(req *engine.Request) string {
	if ns := req.Args.Strings("namespaces"); len(ns) > 0 {
		return "namespaces " + strings.Join(ns, ", ")
	}
	return "all namespaces"
}

// Plan implements engine.Kind.
func (Backup) Plan(_ context.Context, req *engine.Request) (*engine.Change, error) {
	dir := req.Args.String("dir")
	ch := &engine.Change{Action: engine.ActionRead, Summary: fmt.Sprintf("back up resources of %s to %s", scope(req), dir),
		Details: []string{
			"layout: " + dir + "/<namespace or _cluster>/<group>.<kind>/<name>.yaml, with index.json counting objects per kind",
			"stripped: status, metadata.managedFields, resourceVersion, uid, creationTimestamp, generation",
		}}
	if req.Args.Bool("include_secrets") {
		ch.Details = append(ch.Details, "Secrets included (written to disk, never logged)")
	} else {
		ch.Details = append(ch.Details, "Secrets excluded (set include_secrets = true to write them)")
	}
	ch.Outputs = cty.ObjectVal(map[string]cty.Value{"dir": cty.StringVal(dir), "objects": cty.UnknownVal(cty.Number)})
	return ch, nil
}

// Plan implements engine.Kind.
func (Restore) Plan(_ context.Context, req *engine.Request) (*engine.Change, error) {
	return &engine.Change{Action: engine.ActionChange, Summary: fmt.Sprintf("server-side apply %s (%s) as %s", req.Args.String("dir"), scope(req), req.Args.String("field_manager")),
		Details: []string{"a server-side dry-run of every object first; nothing is applied if any object fails it"}}, nil
}
