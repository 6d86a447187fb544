package plans

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a Kubernetes release version: major.minor.patch with an
// optional pre-release ("1.28.0-rc.1"). Package revisions such as "-1.1"
// belong to the distribution, not to the version, and are not accepted here.
type Version struct {
	Major, Minor, Patch int
	Pre                 string
}

// ParseVersion accepts "1.28", "1.28.3", "v1.28.3" and "1.28.0-rc.1".
// A missing patch is 0.
func ParseVersion(s string) (Version, error) {
	orig := s
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	var v Version
	if i := strings.IndexByte(s, '-'); i >= 0 {
		v.Pre = s[i+1:]
		s = s[:i]
		if v.Pre == "" {
			return Version{}, fmt.Errorf("%q is not a version: empty pre-release after \"-\"", orig)
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("%q is not a version: want MAJOR.MINOR or MAJOR.MINOR.PATCH, such as \"1.28.0\"", orig)
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
			return Version{}, fmt.Errorf("%q is not a version: %q is not a number", orig, p)
		}
		nums[i] = n
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	return v, nil
}

// String is the version without a leading "v": "1.28.0".
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	return s
}

// MinorString is "1.28".
func (v Version) MinorString() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Compare orders versions; a pre-release sorts before its release.
func (v Version) Compare(o Version) int {
	for _, d := range []int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.Pre == o.Pre:
		return 0
	case v.Pre == "":
		return 1
	case o.Pre == "":
		return -1
	case v.Pre < o.Pre:
		return -1
	default:
		return 1
	}
}

// MinorsAfter is how many minor releases o is ahead of v (negative if behind),
// within one major version.
func (v Version) MinorsAfter(o Version) int { return o.Minor - v.Minor + (o.Major-v.Major)*1000 }
