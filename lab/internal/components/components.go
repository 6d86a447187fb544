// Package components wires the real control-plane programs into the lab's
// multi-call binary: etcd (go.etcd.io/etcd/server/v3's etcdmain, which is
// the etcd binary's own main and runs etcd through its embed package),
// and kube-apiserver, kube-controller-manager and kube-scheduler from
// k8s.io/kubernetes through their own cobra commands. It also hosts the
// version the apiserver reports.
//
// It does not start or supervise processes; package supervisor does.
package components

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	apicompat "k8s.io/apiserver/pkg/util/compatibility"
	basecompat "k8s.io/component-base/compatibility"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	cm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// ReportedVersionEnv names the environment variable that sets the version
// the apiserver reports at /version (e.g. v1.27.6). The supervisor sets it
// from the image tag of the kube-apiserver static pod manifest.
const ReportedVersionEnv = "RUNBOOK_LAB_REPORTED_VERSION"

// APIServer returns kube-apiserver's own command. When ReportedVersionEnv
// is set, /version reports that version instead of the binary's.
func APIServer() (*cobra.Command, error) {
	if v := os.Getenv(ReportedVersionEnv); v != "" {
		if err := ReportVersion(v); err != nil {
			return nil, err
		}
	}
	return apiserver.NewAPIServerCommand(), nil
}

// ControllerManager returns kube-controller-manager's own command.
func ControllerManager() *cobra.Command { return cm.NewControllerManagerCommand() }

// Scheduler returns kube-scheduler's own command.
func Scheduler() *cobra.Command { return scheduler.NewSchedulerCommand() }

// Kubectl returns kubectl's own command, at the lab's client-go release.
func Kubectl() *cobra.Command { return kubectlcmd.NewDefaultKubectlCommand() }

// Etcd runs etcd's main with args (without the program name); etcd exits
// the process itself.
func Etcd(args []string) {
	etcdmain.Main(append([]string{"etcd"}, args...))
}

// ReportVersion makes the apiserver report v at /version.
//
// The 1.37 apiserver derives its binary, emulation and minimum
// compatibility versions from component-base/version and refuses an
// emulation version below binary-3, so lowering the build version (the
// -ldflags -X route) would not start. Instead, only the version
// information shown to clients changes: the apiserver takes its
// EffectiveVersion from apiserver's DefaultComponentGlobalsRegistry when
// its options are built, so the registry is wrapped before the command is
// created and its Info() is rewritten. Feature gates, API enablement and
// validation keep the binary's real 1.37 behaviour. Must be called before
// NewAPIServerCommand.
func ReportVersion(v string) error {
	parsed, err := utilversion.ParseSemantic(v)
	if err != nil {
		return fmt.Errorf("reported version %q: %w", v, err)
	}
	if _, wrapped := apicompat.DefaultComponentGlobalsRegistry.(reportingRegistry); wrapped {
		return nil
	}
	apicompat.DefaultComponentGlobalsRegistry = reportingRegistry{
		ComponentGlobalsRegistry: apicompat.DefaultComponentGlobalsRegistry,
		reported:                 parsed,
		raw:                      v,
	}
	return nil
}

type reportingRegistry struct {
	basecompat.ComponentGlobalsRegistry
	reported *utilversion.Version
	raw      string
}

func (r reportingRegistry) EffectiveVersionFor(component string) basecompat.EffectiveVersion {
	ev := r.ComponentGlobalsRegistry.EffectiveVersionFor(component)
	if ev == nil || component != basecompat.DefaultKubeComponent {
		return ev
	}
	return reportingVersion{EffectiveVersion: ev, reported: r.reported, raw: r.raw}
}

type reportingVersion struct {
	basecompat.EffectiveVersion
	reported *utilversion.Version
	raw      string
}

// Info is what /version serves.
func (v reportingVersion) Info() *apimachineryversion.Info {
	real := v.EffectiveVersion.Info()
	if real == nil {
		return nil
	}
	return ReportedInfo(*real, v.reported, v.raw)
}

// ReportedInfo rewrites the version fields of info to the simulated
// version; build fields (Go version, platform) stay the binary's.
func ReportedInfo(info apimachineryversion.Info, reported *utilversion.Version, raw string) *apimachineryversion.Info {
	major := strconv.FormatUint(uint64(reported.Major()), 10)
	minor := strconv.FormatUint(uint64(reported.Minor()), 10)
	info.GitVersion = raw
	info.Major, info.Minor = major, minor
	info.EmulationMajor, info.EmulationMinor = major, minor
	info.MinCompatibilityMajor = major
	if reported.Minor() > 0 {
		info.MinCompatibilityMinor = strconv.FormatUint(uint64(reported.Minor()-1), 10)
	} else {
		info.MinCompatibilityMinor = minor
	}
	info.GitCommit = ""
	info.GitTreeState = "clean"
	return &info
}
