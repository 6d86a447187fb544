package nodetools

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/nodestate"
)

// node returns a node root prepared as the lab prepares one at 1.27.6.
func node(t *testing.T) Env {
	t.Helper()
	dir := t.TempDir()
	l := layout.Lab{Dir: dir}
	if err := layout.WriteJSON(l.ConfigFile(), layout.Config{Nodes: []layout.Node{{Name: "cp-1", Role: layout.RoleControlPlane, IP: "127.0.1.1"}, {Name: "worker-1", Role: layout.RoleWorker, IP: "127.0.1.2"}}}); err != nil {
		t.Fatal(err)
	}
	e := Env{Root: l.NodeDir("worker-1"), Lab: l, Node: "worker-1", Now: time.Now}
	if err := InitNode(e, "v1.27.6"); err != nil {
		t.Fatal(err)
	}
	if err := nodestate.Write(l.KubeletStateFile("worker-1"), nodestate.Kubelet{Version: "v1.27.6", State: nodestate.Running}); err != nil {
		t.Fatal(err)
	}
	return e
}

func run(e Env, name string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	e.Stdout, e.Stderr, e.Stdin = &out, &errb, strings.NewReader("")
	code := Run(e, name, args)
	return out.String(), errb.String(), code
}

func TestTools(t *testing.T) {
	e := node(t)
	for _, tc := range []struct {
		name     string
		setup    string // a sources line to write first, if any
		tool     string
		args     []string
		code     int
		out, err string // substrings
		notOut   string
	}{
		{name: "dpkg-query runbook's format", tool: "dpkg-query", args: []string{"-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\\n", "kubeadm", "kubelet"},
			out: "kubeadm 1.27.6-1.1 hi \nkubelet 1.27.6-1.1 hi \n"},
		{name: "dpkg-query default format", tool: "dpkg-query", args: []string{"-W", "kubectl"}, out: "kubectl\t1.27.6-1.1\n"},
		{name: "dpkg-query unknown", tool: "dpkg-query", args: []string{"-W", "nosuch"}, code: 1, err: "dpkg-query: no packages found matching nosuch"},
		{name: "showhold", tool: "apt-mark", args: []string{"showhold"}, out: "kubeadm\nkubectl\nkubelet\n"},
		{name: "madison v1.27 only", tool: "apt-cache", args: []string{"madison", "kubeadm"}, out: "   kubeadm | 1.27.16-1.1 | https://pkgs.k8s.io/core:/stable:/v1.27/deb  Packages\n", notOut: "1.28"},
		{name: "madison unknown prints nothing", tool: "apt-cache", args: []string{"madison", "nosuch"}, code: 0},
		{name: "version not in repo", tool: "apt-get", args: []string{"install", "-y", "--allow-change-held-packages", "kubeadm=1.28.0-1.1"}, code: 100, err: "E: Version '1.28.0-1.1' for 'kubeadm' was not found\n"},
		{name: "unknown package", tool: "apt-get", args: []string{"install", "-y", "nosuch"}, code: 100, err: "E: Unable to locate package nosuch\n"},
		{name: "held package", tool: "apt-get", args: []string{"install", "-y", "kubeadm=1.27.16-1.1"}, code: 100, err: "E: Held packages were changed and -y was used without --allow-change-held-packages.\n"},
		{name: "held package, no -y, no answer", tool: "apt-get", args: []string{"install", "kubeadm=1.27.16-1.1"}, code: 1, out: "Do you want to continue? [Y/n] Abort.\n"},
		{name: "already newest", tool: "apt-get", args: []string{"install", "-y", "kubeadm=1.27.6-1.1"}, out: "kubeadm is already the newest version (1.27.6-1.1).\n"},
		{name: "simulate", tool: "apt-get", args: []string{"install", "-s", "--allow-change-held-packages", "kubeadm=1.27.16-1.1"},
			out: "Inst kubeadm [1.27.6-1.1] (1.27.16-1.1 pkgs.k8s.io/core:/stable:/v1.27/deb [amd64])\n"},
		{name: "update to v1.28", setup: SourceLine("1.28"), tool: "apt-get", args: []string{"update"}, out: "Get:1 https://pkgs.k8s.io/core:/stable:/v1.28/deb  InRelease"},
		{name: "madison after update", tool: "apt-cache", args: []string{"madison", "kubeadm"}, out: "1.28.1-2.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages", notOut: "1.27"},
		{name: "unknown minor repo", setup: SourceLine("1.99"), tool: "apt-get", args: []string{"update"}, code: 100,
			err: "E: The repository 'https://pkgs.k8s.io/core:/stable:/v1.99/deb  InRelease' does not have a Release file."},
		{name: "install after switch", setup: SourceLine("1.28"), tool: "apt-get", args: []string{"install", "-y", "--allow-change-held-packages", "kubeadm=1.28.0-1.1", "kubelet=1.28.0-1.1"},
			out: "Setting up kubeadm (1.28.0-1.1) ..."},
		{name: "hold kept across upgrade", tool: "apt-mark", args: []string{"showhold"}, out: "kubeadm\nkubectl\nkubelet\n"},
		{name: "kubeadm version", tool: "kubeadm", args: []string{"version", "-o", "short"}, out: "v1.28.0\n"},
		{name: "upgrade the other packages", tool: "apt-get", args: []string{"install", "-y", "--allow-change-held-packages", "kubeadm=1.28.0-1.1", "kubectl=1.28.0-1.1", "kubelet=1.28.0-1.1"}},
		{name: "is-active before restart", tool: "systemctl", args: []string{"is-active", "kubelet"}, out: "active\n"},
		{name: "restart picks up the package", tool: "systemctl", args: []string{"restart", "kubelet"}},
		{name: "unknown unit", tool: "systemctl", args: []string{"restart", "nosuch"}, code: 5, err: "Failed to restart nosuch.service: Unit nosuch.service not found.\n"},
		{name: "stop", tool: "systemctl", args: []string{"stop", "kubelet.service"}},
		{name: "is-active stopped", tool: "systemctl", args: []string{"is-active", "kubelet", "containerd"}, code: 3, out: "inactive\nactive\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != "" {
				if err := os.WriteFile(e.Path(SourcesFile), []byte(tc.setup+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if tc.tool != "apt-get" || tc.args[0] != "update" {
					run(e, "apt-get", "update")
				}
			}
			out, errs, code := run(e, tc.tool, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errs, tc.err) || (tc.notOut != "" && strings.Contains(out, tc.notOut)) {
				t.Errorf("%s %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s\nwant stdout with %q (not %q), stderr with %q", tc.tool, tc.args, code, tc.code, out, errs, tc.out, tc.notOut, tc.err)
			}
		})
	}
	k, err := nodestate.Read(e.Lab.KubeletStateFile("worker-1"))
	if err != nil || k.Version != "v1.28.0" || k.State != nodestate.Stopped {
		t.Errorf("kubelet.json after restart and stop = %+v, %v; want v1.28.0 stopped", k, err)
	}
}

func TestVersionPolicies(t *testing.T) {
	for _, tc := range []struct{ target, cluster, kubeadm, mand, skip string }{
		{"v1.28.0", "v1.27.6", "v1.28.0", "", ""},
		{"v1.29.0", "v1.27.6", "v1.29.0", "is too high; kubeadm can upgrade only 1 minor version at a time", ""},
		{"v1.28.0", "v1.27.6", "v1.27.6", "at least one minor release higher than the kubeadm minor release (28 > 27)", ""},
		{"v1.28.3", "v1.27.6", "v1.28.0", "", "is higher than the kubeadm version \"v1.28.0\""},
		{"v1.27.6", "v1.28.0", "v1.28.0", "", "Kubeadm version v1.28.0 can only be used to upgrade to Kubernetes version 1.28"},
	} {
		m, s := versionPolicies(mustV(tc.target), mustV(tc.cluster), mustV(tc.kubeadm))
		if got := strings.Join(m, ";"); (tc.mand == "") != (got == "") || !strings.Contains(got, tc.mand) {
			t.Errorf("%s on %s with kubeadm %s: mandatory %q, want %q", tc.target, tc.cluster, tc.kubeadm, got, tc.mand)
		}
		if got := strings.Join(s, ";"); (tc.skip == "") != (got == "") || !strings.Contains(got, tc.skip) {
			t.Errorf("%s on %s with kubeadm %s: skippable %q, want %q", tc.target, tc.cluster, tc.kubeadm, got, tc.skip)
		}
	}
}

func TestMapEndpoints(t *testing.T) {
	for in, want := range map[string]string{
		"https://127.0.0.1:2379":                       "https://127.0.1.1:40000",
		"127.0.0.1:2379":                               "127.0.1.1:40000",
		"https://localhost:2379,https://10.0.0.1:2379": "https://127.0.1.1:40000,https://10.0.0.1:2379",
		"https://127.0.1.1:2379":                       "https://127.0.1.1:40000",
		"https://127.0.0.1:2380":                       "https://127.0.0.1:2380",
	} {
		if got := MapEndpoints(in, "127.0.1.1:40000", "127.0.1.1"); got != want {
			t.Errorf("MapEndpoints(%q) = %q, want %q", in, got, want)
		}
	}
	if !etcdBefore36("3.5.9-0") || etcdBefore36("3.6.4-0") || etcdBefore36("3.7.0") {
		t.Error("etcdBefore36 is wrong")
	}
}

var _ = filepath.Join

func mustV(s string) *utilversion.Version { return utilversion.MustParseSemantic(s) }
