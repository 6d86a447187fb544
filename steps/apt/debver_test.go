package apt

import "testing"

func TestCompareDebian(t *testing.T) {
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"1.28.0-1.1", "1.28.0-1.1", 0},
		{"1.28.0-2.1", "1.28.0-1.1", 1},
		{"1.28.0-00", "1.28.0-1.1", -1},
		{"1.28.10-1.1", "1.28.9-1.1", 1},
		{"1.29.0-1.1", "1.28.15-1.1", 1},
		{"1.28.0~rc.1-1.1", "1.28.0-1.1", -1},
		{"1:1.0-1", "2.0-1", 1},
		{"1.0", "1.0-0", 0},
		{"1.0a-1", "1.0-1", 1},
	}
	for _, tt := range tests {
		got := CompareDebian(tt.a, tt.b)
		if sign(got) != tt.want {
			t.Errorf("CompareDebian(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
		if back := CompareDebian(tt.b, tt.a); sign(back) != -tt.want {
			t.Errorf("CompareDebian(%q, %q) = %d, want sign %d", tt.b, tt.a, back, -tt.want)
		}
	}
}

func sign(i int) int {
	switch {
	case i < 0:
		return -1
	case i > 0:
		return 1
	}
	return 0
}

func TestResolveMadison(t *testing.T) {
	out := `   kubeadm | 1.28.1-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages
   kubeadm | 1.28.0-2.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages
   kubeadm | 1.28.0-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages
   kubelet | 1.28.0-00 | https://apt.kubernetes.io kubernetes-xenial/main amd64 Packages
`
	m := ParseMadison(out)
	tests := []struct {
		pkg, upstream, want string
		ok                  bool
	}{
		{"kubeadm", "1.28.0", "1.28.0-2.1", true},
		{"kubeadm", "1.28.1", "1.28.1-1.1", true},
		{"kubeadm", "1.28.2", "", false},
		{"kubelet", "1.28.0", "1.28.0-00", true},
		{"kubectl", "1.28.0", "", false},
	}
	for _, tt := range tests {
		c, ok := Resolve(m[tt.pkg], tt.upstream)
		if ok != tt.ok || c.Version != tt.want {
			t.Errorf("Resolve(%s, %s) = %q, %v; want %q, %v", tt.pkg, tt.upstream, c.Version, ok, tt.want, tt.ok)
		}
	}
}
