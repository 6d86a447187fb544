// Package labtest starts the lab (bin/runbook-lab, a real kube-apiserver,
// controller-manager, scheduler and etcd with simulated kubelets) for tests
// of cluster behaviour, each in its own directory, stopped at cleanup.
//
// In -short mode such tests are skipped; otherwise a missing lab binary is
// a test failure that says how to build it, never a silent skip.
package labtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Lab is a running lab.
type Lab struct {
	Dir        string
	Kubeconfig string
	Client     kubernetes.Interface
	bin        string
}

// Options choose the lab's shape.
type Options struct {
	Scenario string // "default" when empty
	Workers  int    // 2 when 0
	Version  string // the lab's default when empty
}

// Root is the repository root (where bin/ is).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Bin is the lab binary: $RUNBOOK_LAB_BIN, or bin/runbook-lab.
func Bin(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs the lab (a real API server); skipped in -short mode")
	}
	b := binPath()
	if _, err := os.Stat(b); err != nil {
		tb.Fatalf("the lab binary %s is missing: build it with `make lab` (or run go test -short)", b)
	}
	return b
}

// TB is what Up and Down need of a test: a *testing.T, or a testscript
// script through an adapter (so that its lab stops when the script ends,
// not when every script has).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

func binPath() string {
	if b := os.Getenv("RUNBOOK_LAB_BIN"); b != "" {
		return b
	}
	return filepath.Join(Root(), "bin", "runbook-lab")
}

// Up starts a lab and stops it when the test ends.
func Up(tb TB, o Options) *Lab {
	tb.Helper()
	bin := binPath()
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("the lab binary %s is missing: build it with `make lab` (or run go test -short)", bin)
	}
	dir, err := os.MkdirTemp("", "runbook-lab-")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	args := []string{"up", "--dir", dir}
	if o.Scenario != "" {
		args = append(args, "--scenario", o.Scenario)
	}
	if o.Workers > 0 {
		args = append(args, "--workers", fmt.Sprint(o.Workers))
	}
	if o.Version != "" {
		args = append(args, "--version", o.Version)
	}
	l := &Lab{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), bin: bin}
	tb.Cleanup(func() { l.Down(tb) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("runbook-lab %v: %v\n%s", args, err, out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	l.Client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return l
}

// Down stops the lab and removes its directory; when the test failed its
// logs/ stay, for inspection.
func (l *Lab) Down(tb TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, l.bin, "down", "--dir", l.Dir).CombinedOutput()
	if err != nil {
		tb.Logf("runbook-lab down: %v\n%s", err, out)
	}
	if !tb.Failed() {
		os.RemoveAll(l.Dir)
		return
	}
	ents, _ := os.ReadDir(l.Dir)
	for _, e := range ents {
		if e.Name() != "logs" {
			os.RemoveAll(filepath.Join(l.Dir, e.Name()))
		}
	}
	tb.Logf("lab logs kept for inspection: %s", filepath.Join(l.Dir, "logs"))
}

// Kubectl runs the machine's kubectl against the lab.
func (l *Lab) Kubectl(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", l.Kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tb.Fatalf("kubectl %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}
