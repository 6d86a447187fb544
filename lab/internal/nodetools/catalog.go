package nodetools

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The package repositories the lab serves, one per minor in the
// pkgs.k8s.io layout.

// RepoURL is the pkgs.k8s.io repository of a minor ("1.28").
func RepoURL(minor string) string {
	return "https://pkgs.k8s.io/core:/stable:/v" + minor + "/deb/"
}

// Keyring is where the repository's key lives on a node.
const Keyring = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"

// SourcesFile is the node's Kubernetes sources file.
const SourcesFile = "/etc/apt/sources.list.d/kubernetes.list"

// SourceLine is the deb line of a minor's repository.
func SourceLine(minor string) string {
	return fmt.Sprintf("deb [signed-by=%s] %s /", Keyring, RepoURL(minor))
}

var repoRE = regexp.MustCompile(`^https://pkgs\.k8s\.io/core:/stable:/v(\d+\.\d+)/deb/?$`)

// patches is the newest patch release per minor.
var patches = map[int]int{26: 15, 27: 16, 28: 15, 29: 14, 30: 14, 31: 10}

// Pkg is one package version in a repository.
type Pkg struct {
	Name, Version, Description string
}

var descriptions = map[string]string{
	"kubeadm":        "Command-line utility for administering a Kubernetes cluster",
	"kubelet":        "Node agent for Kubernetes clusters",
	"kubectl":        "Command-line utility for interacting with a Kubernetes cluster",
	"cri-tools":      "Command-line utility for interacting with a container runtime",
	"kubernetes-cni": "Binaries required to provision kubernetes container networking",
}

// RepoPackages lists what a minor's repository holds, or false when the
// lab has no such repository.
func RepoPackages(url string) ([]Pkg, bool) {
	m := repoRE.FindStringSubmatch(url)
	if m == nil {
		return nil, false
	}
	minor, _ := strconv.Atoi(strings.TrimPrefix(m[1], "1."))
	last, ok := patches[minor]
	if !ok || !strings.HasPrefix(m[1], "1.") {
		return nil, false
	}
	var out []Pkg
	for p := 0; p <= last; p++ {
		var revs []string
		switch {
		case minor == 26 && p >= 12:
			revs = []string{"2.1"} // rebuilt releases
		case p == 1:
			revs = []string{"1.1", "2.1"}
		default:
			revs = []string{"1.1"}
		}
		for _, r := range revs {
			v := fmt.Sprintf("1.%d.%d-%s", minor, p, r)
			for _, n := range []string{"kubeadm", "kubectl", "kubelet"} {
				out = append(out, Pkg{n, v, descriptions[n]})
			}
		}
	}
	for p := 0; p <= 1; p++ {
		out = append(out, Pkg{"cri-tools", fmt.Sprintf("1.%d.%d-1.1", minor, p), descriptions["cri-tools"]})
	}
	cni := "1.2.0-2.1"
	if minor >= 29 {
		cni = fmt.Sprintf("1.%d.0-1.1", minor-26)
	}
	out = append(out, Pkg{"kubernetes-cni", cni, descriptions["kubernetes-cni"]})
	return out, true
}

// CompareVersions compares Debian version strings of the forms the lab
// uses (digits and separators): <0, 0, >0.
func CompareVersions(a, b string) int {
	pa, pb := versionParts(a), versionParts(b)
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func versionParts(v string) []int {
	// upstream then revision; epochs are not used.
	up, rev, _ := strings.Cut(v, "-")
	var out []int
	for _, s := range []string{up, rev} {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
		out = append(out, -1)
	}
	return out
}

// SortNewestFirst sorts versions newest first.
func SortNewestFirst(vs []string) {
	sort.SliceStable(vs, func(i, j int) bool { return CompareVersions(vs[i], vs[j]) > 0 })
}

// Upstream is "1.28.0" for "1.28.0-1.1".
func Upstream(v string) string {
	u, _, _ := strings.Cut(v, "-")
	return u
}
