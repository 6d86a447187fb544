package components

import (
	"runtime/debug"
	"strings"
	"sync/atomic"
	_ "unsafe" // for go:linkname

	_ "k8s.io/component-base/version" // the variables linked below
)

// Official Kubernetes builds set these with -ldflags -X; a plain `go build`
// leaves "v0.0.0-master+$Format:%H$", which kubectl refuses to parse.

//go:linkname gitVersion k8s.io/component-base/version.gitVersion
var gitVersion string

//go:linkname gitMajor k8s.io/component-base/version.gitMajor
var gitMajor string

//go:linkname gitMinor k8s.io/component-base/version.gitMinor
var gitMinor string

//go:linkname dynamicGitVersion k8s.io/component-base/version.dynamicGitVersion
var dynamicGitVersion atomic.Value

// SetBuildVersion makes component-base report the k8s.io/kubernetes
// release the binary was built from (e.g. v1.37.2), as a release build
// would. It must run before a component builds its options. It changes
// nothing when the module version is unknown.
func SetBuildVersion() {
	v := kubernetesModuleVersion()
	if v == "" {
		return
	}
	major, rest, ok := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	if !ok {
		return
	}
	minor, _, _ := strings.Cut(rest, ".")
	gitVersion, gitMajor, gitMinor = v, major, minor
	dynamicGitVersion.Store(v)
}

func kubernetesModuleVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range info.Deps {
		if d.Path == "k8s.io/kubernetes" {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return ""
}
