package engine_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// GeneratePlan writes a plan with n static nodes and phases phases, each
// phase going through every node with the upgrade's steps: the size the
// benchmark in issue 2 names (1,000 nodes in 5 phases).
func GeneratePlan(n, phases int) string {
	var b strings.Builder
	b.WriteString("variable \"target\" { default = \"1.28.0\" }\n")
	b.WriteString("inventory \"all\" {\n  nodes = [\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    { name = \"node-%d\", address = \"10.0.%d.%d\", labels = { zone = \"z%d\" } },\n", i, i/250, i%250, i%3)
	}
	b.WriteString("  ]\n}\n")
	for p := 0; p < phases; p++ {
		fmt.Fprintf(&b, `phase "p%d" {
  nodes = inventory.all
  rolling {
    batch = [1, "10%%"]
  }
  step "drain" "drain" {
    ignore_daemonsets = true
    timeout           = "5m"
  }
  step "apt" "pkgs" {
    packages = { kubeadm = var.target, kubelet = var.target }
  }
  step "kubeadm" "upgrade" {
    action  = "upgrade_node"
    version = var.target
  }
  step "systemctl" "restart" {
    action = "restart"
    units  = ["kubelet"]
  }
  step "wait_node" "ready" {
    kubelet_version = var.target
  }
  step "uncordon" "uncordon" {}
}
`, p)
	}
	return b.String()
}

// TestWriteGeneratedPlan writes the benchmark's plan to $RUNBOOK_BENCH_PLAN
// for scripts/bench-plan.sh, which measures the real binary.
func TestWriteGeneratedPlan(t *testing.T) {
	out := os.Getenv("RUNBOOK_BENCH_PLAN")
	if out == "" {
		t.Skip("RUNBOOK_BENCH_PLAN not set")
	}
	if err := os.WriteFile(out, []byte(GeneratePlan(1000, 5)), 0o644); err != nil {
		t.Fatal(err)
	}
}
