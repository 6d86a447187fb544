package components

import (
	"testing"

	utilversion "k8s.io/apimachinery/pkg/util/version"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	apicompat "k8s.io/apiserver/pkg/util/compatibility"
	basecompat "k8s.io/component-base/compatibility"
	baseversion "k8s.io/component-base/version"
)

func TestReportedInfo(t *testing.T) {
	real := apimachineryversion.Info{Major: "1", Minor: "37", GitVersion: "v0.0.0-master", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	got := ReportedInfo(real, utilversion.MustParseSemantic("v1.27.6"), "v1.27.6")
	if got.GitVersion != "v1.27.6" || got.Major != "1" || got.Minor != "27" || got.EmulationMinor != "27" || got.MinCompatibilityMinor != "26" {
		t.Errorf("ReportedInfo = %+v", got)
	}
	if got.GoVersion != "go1.26.8" || got.Platform != "linux/amd64" {
		t.Errorf("build fields changed: %+v", got)
	}
}

// TestReportVersionKeepsBinaryBehaviour checks that only the reported
// information changes: the effective (binary/emulation) versions that gate
// features stay the binary's own.
func TestReportVersionKeepsBinaryBehaviour(t *testing.T) {
	before := apicompat.DefaultComponentGlobalsRegistry.EffectiveVersionFor(basecompat.DefaultKubeComponent)
	if err := ReportVersion("v1.27.6"); err != nil {
		t.Fatal(err)
	}
	if err := ReportVersion("not-a-version"); err == nil {
		t.Error("ReportVersion of a bad version: no error")
	}
	ev := apicompat.DefaultComponentGlobalsRegistry.EffectiveVersionFor(basecompat.DefaultKubeComponent)
	if got := ev.Info().GitVersion; got != "v1.27.6" {
		t.Errorf("Info().GitVersion = %s", got)
	}
	if !ev.BinaryVersion().EqualTo(before.BinaryVersion()) || !ev.EmulationVersion().EqualTo(before.EmulationVersion()) {
		t.Errorf("effective version changed: %s -> %s", before, ev)
	}
	if errs := ev.Validate(); len(errs) > 0 {
		t.Errorf("Validate: %v", errs)
	}
}

func TestSetBuildVersion(t *testing.T) {
	SetBuildVersion()
	v := kubernetesModuleVersion()
	if v == "" {
		t.Skip("no build info for k8s.io/kubernetes in this test binary")
	}
	if got := baseversion.Get().GitVersion; got != v {
		t.Errorf("GitVersion = %s, want %s", got, v)
	}
	if got := baseversion.Get().Minor; got == "" {
		t.Errorf("Minor empty: %+v", baseversion.Get())
	}
}
