package apt

import "strings"

// CompareDebian compares Debian version strings as dpkg does
// ([epoch:]upstream[-revision]): negative, zero or positive.
func CompareDebian(a, b string) int {
	ea, ua, ra := splitDebian(a)
	eb, ub, rb := splitDebian(b)
	if c := cmpNum(ea, eb); c != 0 {
		return c
	}
	if c := verrevcmp(ua, ub); c != 0 {
		return c
	}
	return verrevcmp(ra, rb)
}

func splitDebian(v string) (epoch, upstream, revision string) {
	epoch = "0"
	if i := strings.IndexByte(v, ':'); i >= 0 {
		epoch, v = v[:i], v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// Upstream is the upstream part of a Debian version: "1.28.0" of "1.28.0-1.1".
func Upstream(v string) string {
	_, u, _ := splitDebian(v)
	return u
}

func cmpNum(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// order gives dpkg's weight of a character in a non-digit run: '~' sorts
// before everything, even the end of the string; letters before others.
func order(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	case c != 0:
		return int(c) + 256
	}
	return 0
}

func verrevcmp(a, b string) int {
	i, j := 0, 0
	at := func(s string, k int) byte {
		if k < len(s) {
			return s[k]
		}
		return 0
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for i < len(a) || j < len(b) {
		first := 0
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(at(a, i)), order(at(b, j))
			if i >= len(a) || isDigit(a[i]) {
				ac = order(0)
			}
			if j >= len(b) || isDigit(b[j]) {
				bc = order(0)
			}
			if ac != bc {
				return ac - bc
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if first == 0 {
				first = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if first != 0 {
			return first
		}
	}
	return 0
}

// Candidate is a version of a package available from a repository.
type Candidate struct {
	Version string
	Source  string // repository line as apt-cache madison shows it
}

// ParseMadison reads `apt-cache madison PKG...` output:
//
//	kubeadm | 1.28.0-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages
func ParseMadison(out string) map[string][]Candidate {
	res := map[string][]Candidate{}
	for _, line := range strings.Split(out, "\n") {
		parts := strings.Split(line, "|")
		if len(parts) < 3 {
			continue
		}
		pkg, ver, src := strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1]), strings.TrimSpace(parts[2])
		if pkg == "" || ver == "" {
			continue
		}
		res[pkg] = append(res[pkg], Candidate{Version: ver, Source: src})
	}
	return res
}

// Resolve picks the newest candidate whose upstream version is the target
// ("1.28.0" matches "1.28.0-1.1", "1.28.0-2.1" and legacy "1.28.0-00").
func Resolve(cands []Candidate, upstream string) (Candidate, bool) {
	var best Candidate
	found := false
	for _, c := range cands {
		if Upstream(c.Version) != upstream {
			continue
		}
		if !found || CompareDebian(c.Version, best.Version) > 0 {
			best, found = c, true
		}
	}
	return best, found
}
