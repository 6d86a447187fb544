package bootstrap

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/runbookhq/runbook/lab/internal/scenario"
)

func TestDNSIP(t *testing.T) {
	ip, err := DNSIP("10.96.0.0/12")
	if err != nil || ip != "10.96.0.10" {
		t.Errorf("DNSIP = %s, %v", ip, err)
	}
	if _, err := DNSIP("fd00::/108"); err == nil {
		t.Error("IPv6: no error")
	}
}

func TestRenderAddons(t *testing.T) {
	cc := ClusterConfiguration("v1.27.6", "127.0.1.1:6443", "10.244.0.0/16", "10.96.0.0/12")
	b, err := Render(Params{Version: "v1.27.6", PodCIDR: "10.244.0.0/16", DNSIP: "10.96.0.10",
		CoreDNSVersion: CoreDNSVersion("v1.27.6"), ClusterConfiguration: cc})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := scenario.Decode(b, "addons")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetName() == "kubeadm-config" {
			found = true
			data, _, _ := unstructuredString(o.Object, "data", "ClusterConfiguration")
			var m map[string]any
			if err := yaml.Unmarshal([]byte(data), &m); err != nil {
				t.Fatalf("ClusterConfiguration is not YAML: %v\n%s", err, data)
			}
			if m["kubernetesVersion"] != "v1.27.6" || m["apiVersion"] != "kubeadm.k8s.io/v1beta3" || m["controlPlaneEndpoint"] != "127.0.1.1:6443" {
				t.Errorf("ClusterConfiguration %v", m)
			}
		}
		if o.GetKind() == "DaemonSet" && !strings.Contains(string(mustJSON(t, o.Object)), "registry.k8s.io/kube-proxy:v1.27.6") {
			t.Errorf("kube-proxy image not at the cluster version")
		}
	}
	if !found {
		t.Error("no kubeadm-config ConfigMap")
	}
	if !strings.Contains(ClusterConfiguration("v1.31.0", "e", "p", "s"), "kubeadm.k8s.io/v1beta4") {
		t.Error("1.31 uses v1beta4")
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[f]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
