package versioncheck

import (
	"strings"
	"testing"

	"github.com/runbookhq/runbook/plans"
)

func v(s string) plans.Version {
	x, err := plans.ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return x
}

// TestCheckF04 covers field case F04's three inputs and the cases around them.
func TestCheckF04(t *testing.T) {
	cp := map[string]bool{"cp-1": true}
	upgrade := []Op{
		{Address: "apply", Node: "cp-1", Kind: OpUpgradeApply, Version: v("1.28.0")},
		{Address: "kubelet-cp", Node: "cp-1", Kind: OpKubelet, Version: v("1.28.0")},
		{Address: "node-w1", Node: "worker-1", Kind: OpUpgradeNode},
		{Address: "kubelet-w1", Node: "worker-1", Kind: OpKubelet, Version: v("1.28.0")},
	}
	tests := []struct {
		name    string
		target  string
		cluster Cluster
		ops     []Op
		want    []string // substrings, each in some refusal; none: no refusal
	}{
		{"A: skips a minor", "1.29.0",
			Cluster{APIServer: v("1.27.6"), Kubelets: map[string]plans.Version{"cp-1": v("1.27.6")}, ControlPlanes: cp}, nil,
			[]string{"skips 1.28", "target 1.28 first"}},
		{"B: kubelet two minors behind a 1.28 target", "1.28.0",
			Cluster{APIServer: v("1.27.6"), Kubelets: map[string]plans.Version{"cp-1": v("1.27.6"), "worker-1": v("1.27.6"), "worker-2": v("1.26.9")}, ControlPlanes: cp}, upgrade,
			[]string{"node worker-2 runs kubelet 1.26.9", "at most 1 minor(s) behind", "up to 1.28: one"}},
		{"B': three behind is fine from 1.29", "1.29.0",
			Cluster{APIServer: v("1.28.3"), Kubelets: map[string]plans.Version{"cp-1": v("1.28.3"), "worker-2": v("1.26.9")}, ControlPlanes: cp}, nil,
			nil},
		{"C: kubelet before the control plane", "1.28.0",
			Cluster{APIServer: v("1.27.6"), Kubelets: map[string]plans.Version{"cp-1": v("1.27.6"), "worker-1": v("1.27.6")}, ControlPlanes: cp},
			[]Op{upgrade[3], upgrade[0]},
			[]string{"kubelet-w1 installs kubelet 1.28.0 on worker-1 while kube-apiserver is at 1.27.6"}},
		{"C': upgrade node before upgrade apply", "1.28.0",
			Cluster{APIServer: v("1.27.6"), ControlPlanes: cp}, []Op{upgrade[2], upgrade[0]},
			[]string{"node-w1 runs kubeadm upgrade node on worker-1 before kubeadm upgrade apply"}},
		{"upgrade apply on a worker", "1.28.0",
			Cluster{APIServer: v("1.27.6"), ControlPlanes: cp}, []Op{{Address: "x", Node: "worker-1", Kind: OpUpgradeApply, Version: v("1.28.0")}},
			[]string{"not a control-plane node"}},
		{"the right order passes", "1.28.0",
			Cluster{APIServer: v("1.27.6"), Kubelets: map[string]plans.Version{"cp-1": v("1.27.6"), "worker-1": v("1.27.6")}, ControlPlanes: cp}, upgrade,
			nil},
		{"offline: order only", "1.28.0", Cluster{}, []Op{upgrade[3], upgrade[0]},
			[]string{"before the control plane is upgraded"}},
		{"downgrade", "1.26.0", Cluster{APIServer: v("1.27.6")}, nil, []string{"does not downgrade"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(v(tt.target), tt.cluster, tt.ops)
			all := strings.Join(got, "\n")
			if len(tt.want) == 0 && len(got) > 0 {
				t.Fatalf("refused:\n%s", all)
			}
			if len(tt.want) > 0 && len(got) == 0 {
				t.Fatalf("not refused; want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("refusals lack %q:\n%s", w, all)
				}
			}
		})
	}
}
