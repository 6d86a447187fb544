// Package all registers every built-in step kind. It is the only place that
// lists them; the CLI and the tests take the registry from here.
package all

import (
	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/steps/apt"
	"github.com/runbookhq/runbook/steps/cordon"
	"github.com/runbookhq/runbook/steps/drain"
	"github.com/runbookhq/runbook/steps/etcd"
	"github.com/runbookhq/runbook/steps/exec"
	"github.com/runbookhq/runbook/steps/kubeadm"
	"github.com/runbookhq/runbook/steps/resources"
	"github.com/runbookhq/runbook/steps/systemctl"
	"github.com/runbookhq/runbook/steps/velero"
	"github.com/runbookhq/runbook/steps/versioncheck"
	"github.com/runbookhq/runbook/steps/wait"
)

// Registry returns a registry of every built-in kind.
func Registry() *engine.Registry {
	return engine.NewRegistry(
		apt.Kind{}, apt.Repository{},
		cordon.Cordon{}, cordon.Uncordon{},
		drain.Kind{},
		etcd.Snapshot{}, etcd.Restore{}, etcd.Direct{},
		exec.Kind{},
		kubeadm.Kind{},
		resources.Backup{}, resources.Restore{},
		systemctl.Kind{},
		velero.Backup{}, velero.Restore{}, velero.Schedule{},
		versioncheck.Kind{},
		wait.Node{}, wait.Workloads{},
	)
}
