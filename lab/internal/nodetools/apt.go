package nodetools

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/runbookhq/runbook/lab/internal/layout"
)

// ListsDir holds the package lists apt-get update fetched.
const ListsDir = "/var/lib/apt/lists"

// Source is one deb line of the node's sources.
type Source struct {
	URI, Suite string
	SignedBy   string
	File       string
}

// Index is how apt names a flat repository's package index in messages:
// "https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages".
func (s Source) Index() string { return strings.TrimSuffix(s.URI, "/") + "  Packages" }

func (s Source) listName() string {
	u := strings.TrimSuffix(s.URI, "/")
	u = u[strings.Index(u, "://")+3:]
	return strings.ReplaceAll(u, "/", "_") + "_Packages"
}

func indexFromListName(name string) string {
	u := strings.TrimSuffix(name, "_Packages")
	return "https://" + strings.ReplaceAll(u, "_", "/") + "  Packages"
}

// ReadSources parses /etc/apt/sources.list and sources.list.d/*.list.
func ReadSources(e Env) ([]Source, error) {
	files := []string{"/etc/apt/sources.list"}
	d, _ := filepath.Glob(e.Path("/etc/apt/sources.list.d/*.list"))
	sort.Strings(d)
	for _, f := range d {
		files = append(files, "/etc/apt/sources.list.d/"+filepath.Base(f))
	}
	var out []Source
	for _, f := range files {
		b, err := os.ReadFile(e.Path(f))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			fs := strings.Fields(line)
			if len(fs) < 2 || fs[0] != "deb" {
				continue
			}
			s := Source{File: f}
			fs = fs[1:]
			if strings.HasPrefix(fs[0], "[") {
				for len(fs) > 0 {
					opt := strings.Trim(fs[0], "[]")
					if k, v, ok := strings.Cut(opt, "="); ok && k == "signed-by" {
						s.SignedBy = v
					}
					end := strings.HasSuffix(fs[0], "]")
					fs = fs[1:]
					if end {
						break
					}
				}
			}
			if len(fs) < 2 {
				continue
			}
			s.URI, s.Suite = fs[0], fs[1]
			out = append(out, s)
		}
	}
	return out, nil
}

// Candidate is an available version and the index it comes from.
type Candidate struct{ Version, Index, Description string }

// Available reads the package lists: package -> candidates, newest first.
func Available(e Env) map[string][]Candidate {
	out := map[string][]Candidate{}
	files, _ := filepath.Glob(e.Path(ListsDir + "/*_Packages"))
	for _, f := range files {
		idx := indexFromListName(filepath.Base(f))
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, st := range strings.Split(string(b), "\n\n") {
			var name, ver, desc string
			for _, l := range strings.Split(st, "\n") {
				k, v, _ := strings.Cut(l, ": ")
				switch k {
				case "Package":
					name = v
				case "Version":
					ver = v
				case "Description":
					desc = v
				}
			}
			if name != "" && ver != "" {
				out[name] = append(out[name], Candidate{ver, idx, desc})
			}
		}
	}
	for n := range out {
		c := out[n]
		sort.SliceStable(c, func(i, j int) bool { return CompareVersions(c[i].Version, c[j].Version) > 0 })
	}
	return out
}

func writeList(e Env, s Source, pkgs []Pkg) (bool, error) {
	var b strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&b, "Package: %s\nArchitecture: amd64\nVersion: %s\nMaintainer: Kubernetes Authors <dev@kubernetes.io>\nFilename: %s_%s_amd64.deb\nDescription: %s\n\n", p.Name, p.Version, p.Name, p.Version, p.Description)
	}
	path := e.Path(ListsDir + "/" + s.listName())
	if old, err := os.ReadFile(path); err == nil && string(old) == b.String() {
		return false, nil
	}
	return true, layout.WriteFileAtomic(path, []byte(b.String()), 0o644)
}

// AptUpdate is `apt-get update`: the package lists follow the sources.
func aptUpdate(e Env) int {
	srcs, err := ReadSources(e)
	if err != nil {
		fmt.Fprintf(e.Stderr, "E: %v\n", err)
		return 100
	}
	if err := os.MkdirAll(e.Path(ListsDir), 0o755); err != nil {
		fmt.Fprintf(e.Stderr, "E: %v\n", err)
		return 100
	}
	keep := map[string]bool{}
	var errs, warns []string
	n, fetched := 0, 0
	for _, s := range srcs {
		n++
		rel := strings.TrimSuffix(s.URI, "/") + "  InRelease"
		pkgs, ok := RepoPackages(s.URI)
		host := strings.SplitN(strings.TrimPrefix(strings.TrimPrefix(s.URI, "https://"), "http://"), "/", 2)[0]
		switch {
		case !ok && host == "pkgs.k8s.io":
			fmt.Fprintf(e.Stdout, "Err:%d %s\n  404  Not Found [IP: 10.0.0.1 443]\n", n, rel)
			errs = append(errs, fmt.Sprintf("The repository '%s' does not have a Release file.", rel))
			continue
		case !ok:
			fmt.Fprintf(e.Stdout, "Ign:%d %s %s InRelease\nErr:%d %s %s InRelease\n  Temporary failure resolving '%s'\n", n, s.URI, s.Suite, n, s.URI, s.Suite, host)
			warns = append(warns, fmt.Sprintf("Failed to fetch %s/dists/%s/InRelease  Temporary failure resolving '%s'", strings.TrimSuffix(s.URI, "/"), s.Suite, host))
			continue
		case s.SignedBy != "" && !exists(e.Path(s.SignedBy)):
			fmt.Fprintf(e.Stdout, "Get:%d %s [1,186 B]\nErr:%d %s\n  Sub-process /usr/bin/sqv returned an error code (1), error message is: Missing key %s\n", n, rel, n, rel, "234654DA9A296436")
			errs = append(errs, fmt.Sprintf("The repository '%s' is not signed.", rel))
			continue
		}
		keep[s.listName()] = true
		changed, err := writeList(e, s, pkgs)
		if err != nil {
			fmt.Fprintf(e.Stderr, "E: %v\n", err)
			return 100
		}
		if changed {
			fmt.Fprintf(e.Stdout, "Get:%d %s [1,186 B]\n", n, rel)
			n++
			fmt.Fprintf(e.Stdout, "Get:%d %s [%.1f kB]\n", n, s.Index(), float64(len(pkgs))*0.35)
			fetched += 1186 + len(pkgs)*350
		} else {
			fmt.Fprintf(e.Stdout, "Hit:%d %s\n", n, rel)
		}
	}
	files, _ := filepath.Glob(e.Path(ListsDir + "/*_Packages"))
	for _, f := range files {
		if !keep[filepath.Base(f)] {
			_ = os.Remove(f)
		}
	}
	if fetched > 0 {
		fmt.Fprintf(e.Stdout, "Fetched %.1f kB in 0s (%.1f kB/s)\n", float64(fetched)/1000, float64(fetched)/1000)
	}
	fmt.Fprintln(e.Stdout, "Reading package lists...")
	for _, w := range warns {
		fmt.Fprintf(e.Stderr, "W: %s\n", w)
	}
	if len(warns) > 0 {
		fmt.Fprintln(e.Stderr, "W: Some index files failed to download. They have been ignored, or old ones used instead.")
	}
	for _, er := range errs {
		fmt.Fprintf(e.Stderr, "E: %s\n", er)
	}
	if len(errs) > 0 {
		fmt.Fprintln(e.Stderr, "N: Updating from such a repository can't be done securely, and is therefore disabled by default.\nN: See apt-secure(8) manpage for repository creation and user configuration details.")
		return 100
	}
	return 0
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

type aptOpts struct {
	yes, simulate, allowHeld, allowDowngrades, quiet bool
}

// AptGet is apt-get: update, install, upgrade (held packages kept back).
func AptGet(e Env, args []string) int {
	var o aptOpts
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "-y", "--yes", "--assume-yes", "-yq", "-qy":
			o.yes = true
		case "-q", "-qq", "--quiet":
			o.quiet = true
		case "-s", "--simulate", "--just-print", "--dry-run", "--recon", "--no-act":
			o.simulate = true
		case "--allow-change-held-packages":
			o.allowHeld = true
		case "--allow-downgrades":
			o.allowDowngrades = true
		case "--no-install-recommends", "--no-install-suggests", "--fix-missing", "-m", "--reinstall", "--only-upgrade":
		case "-o", "-c":
			i++
		default:
			if strings.HasPrefix(a, "-o") || strings.HasPrefix(a, "--option=") {
				continue
			}
			if strings.HasPrefix(a, "-") {
				fmt.Fprintf(e.Stderr, "E: Command line option '%s' [from %s] is not understood in combination with the other options.\n", strings.TrimLeft(a, "-"), a)
				return 100
			}
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		fmt.Fprintln(e.Stdout, "apt 2.6.1 (amd64)\nUsage: apt-get [options] command\n       apt-get [options] install|remove pkg1 [pkg2 ...]\n       apt-get [options] source pkg1 [pkg2 ...]")
		return 1
	}
	switch rest[0] {
	case "update":
		return aptUpdate(e)
	case "install":
		return aptInstall(e, o, rest[1:])
	case "upgrade", "dist-upgrade", "full-upgrade":
		return aptInstall(e, o, nil)
	case "check", "clean", "autoclean", "autoremove":
		fmt.Fprintln(e.Stdout, "Reading package lists...\nBuilding dependency tree...\nReading state information...")
		return 0
	}
	fmt.Fprintf(e.Stderr, "E: Invalid operation %s\n", rest[0])
	return 100
}

type change struct {
	name, from, to, index, desc string
	held                        bool
}

func aptInstall(e Env, o aptOpts, reqs []string) int {
	st, err := ReadStatus(e)
	if err != nil {
		fmt.Fprintf(e.Stderr, "E: %v\n", err)
		return 100
	}
	avail := Available(e)
	out := e.Stdout
	fmt.Fprintln(out, "Reading package lists...\nBuilding dependency tree...\nReading state information...")
	var errs []string
	var changes []change
	requested := map[string]bool{}
	upgradeAll := reqs == nil
	if upgradeAll {
		for _, n := range st.Names() {
			reqs = append(reqs, n)
		}
	}
	for _, r := range reqs {
		name, ver, pinned := strings.Cut(r, "=")
		requested[name] = true
		cands := avail[name]
		inst, installed := st[name]
		if len(cands) == 0 && !installed {
			errs = append(errs, fmt.Sprintf("Unable to locate package %s", name))
			continue
		}
		var target *Candidate
		if pinned {
			for i := range cands {
				if cands[i].Version == ver {
					target = &cands[i]
					break
				}
			}
			if target == nil {
				errs = append(errs, fmt.Sprintf("Version '%s' for '%s' was not found", ver, name))
				continue
			}
		} else if len(cands) > 0 {
			target = &cands[0]
		}
		if target == nil || (installed && inst.Version == target.Version) ||
			(installed && !pinned && CompareVersions(target.Version, inst.Version) < 0) {
			if !upgradeAll {
				fmt.Fprintf(out, "%s is already the newest version (%s).\n", name, inst.Version)
			}
			continue
		}
		if upgradeAll && installed && inst.Want == "hold" {
			continue
		}
		c := change{name: name, to: target.Version, index: target.Index, desc: target.Description}
		if installed {
			c.from, c.held = inst.Version, inst.Want == "hold"
		}
		changes = append(changes, c)
	}
	if len(errs) > 0 {
		for _, er := range errs {
			fmt.Fprintf(e.Stderr, "E: %s\n", er)
		}
		return 100
	}
	var held, upgraded, downgraded, fresh, kept []string
	for _, c := range changes {
		switch {
		case c.from == "":
			fresh = append(fresh, c.name)
		case CompareVersions(c.to, c.from) > 0:
			upgraded = append(upgraded, c.name)
		default:
			downgraded = append(downgraded, c.name)
		}
		if c.held {
			held = append(held, c.name)
		}
	}
	notUpgraded := 0
	for _, n := range st.Names() {
		if cands := avail[n]; len(cands) > 0 && !requested[n] && CompareVersions(cands[0].Version, st[n].Version) > 0 {
			notUpgraded++
		} else if upgradeAll && st[n].Want == "hold" && len(cands) > 0 && CompareVersions(cands[0].Version, st[n].Version) > 0 {
			kept = append(kept, n)
			notUpgraded++
		}
	}
	list := func(title string, names []string) {
		if len(names) > 0 {
			fmt.Fprintf(out, "%s\n  %s\n", title, strings.Join(names, " "))
		}
	}
	if upgradeAll {
		fmt.Fprintln(out, "Calculating upgrade...")
	}
	list("The following packages have been kept back:", kept)
	list("The following held packages will be changed:", held)
	list("The following NEW packages will be installed:", fresh)
	list("The following packages will be upgraded:", upgraded)
	list("The following packages will be DOWNGRADED:", downgraded)
	if len(downgraded) > 0 {
		fmt.Fprintf(out, "%d upgraded, %d newly installed, %d downgraded, 0 to remove and %d not upgraded.\n", len(upgraded), len(fresh), len(downgraded), notUpgraded)
	} else {
		fmt.Fprintf(out, "%d upgraded, %d newly installed, 0 to remove and %d not upgraded.\n", len(upgraded), len(fresh), notUpgraded)
	}
	if len(changes) == 0 {
		return 0
	}
	if len(held) > 0 && o.yes && !o.allowHeld {
		fmt.Fprintln(e.Stderr, "E: Held packages were changed and -y was used without --allow-change-held-packages.")
		return 100
	}
	if len(downgraded) > 0 && o.yes && !o.allowDowngrades {
		fmt.Fprintln(e.Stderr, "E: Packages were downgraded and -y was used without --allow-downgrades.")
		return 100
	}
	if o.simulate {
		for _, c := range changes {
			from := ""
			if c.from != "" {
				from = " [" + c.from + "]"
			}
			src := strings.TrimSuffix(strings.TrimPrefix(c.index, "https://"), "  Packages")
			fmt.Fprintf(out, "Inst %s%s (%s %s [amd64])\n", c.name, from, c.to, src)
		}
		for _, c := range changes {
			src := strings.TrimSuffix(strings.TrimPrefix(c.index, "https://"), "  Packages")
			fmt.Fprintf(out, "Conf %s (%s %s [amd64])\n", c.name, c.to, src)
		}
		return 0
	}
	if !o.yes && (len(held) > 0 || len(downgraded) > 0) {
		fmt.Fprint(out, "Do you want to continue? [Y/n] ")
		line, err := bufio.NewReader(e.Stdin).ReadString('\n')
		ans := strings.TrimSpace(line)
		if (err != nil && err != io.EOF) || (err == io.EOF && line == "") || (ans != "" && ans != "y" && ans != "Y" && ans != "yes") {
			fmt.Fprintln(out, "Abort.")
			return 1
		}
	}
	fmt.Fprintf(out, "Need to get %.1f MB of archives.\nAfter this operation, 0 B of additional disk space will be used.\n", 10.1*float64(len(changes)))
	for i, c := range changes {
		fmt.Fprintf(out, "Get:%d %s %s %s [10.1 MB]\n", i+1, strings.TrimSuffix(c.index, "  Packages")+" ", c.name, c.to)
	}
	fmt.Fprintf(out, "Fetched %.1f MB in 1s (10.1 MB/s)\n", 10.1*float64(len(changes)))
	fmt.Fprintln(out, "(Reading database ... 31337 files and directories currently installed.)")
	for _, c := range changes {
		fmt.Fprintf(out, "Preparing to unpack .../%s_%s_amd64.deb ...\n", c.name, c.to)
		if c.from != "" {
			fmt.Fprintf(out, "Unpacking %s (%s) over (%s) ...\n", c.name, c.to, c.from)
		} else {
			fmt.Fprintf(out, "Selecting previously unselected package %s.\nUnpacking %s (%s) ...\n", c.name, c.name, c.to)
		}
		p := st[c.name]
		if p == nil {
			p = &Installed{Name: c.name, Want: "install", Arch: "amd64"}
			st[c.name] = p
		}
		p.Version, p.Description = c.to, c.desc
	}
	if err := st.Write(e); err != nil {
		fmt.Fprintf(e.Stderr, "E: %v\n", err)
		return 100
	}
	for _, c := range changes {
		fmt.Fprintf(out, "Setting up %s (%s) ...\n", c.name, c.to)
	}
	return 0
}

// AptMark is apt-mark hold|unhold|showhold.
func AptMark(e Env, args []string) int {
	var rest []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		fmt.Fprintln(e.Stderr, "E: No command given")
		return 100
	}
	st, err := ReadStatus(e)
	if err != nil {
		fmt.Fprintf(e.Stderr, "E: %v\n", err)
		return 100
	}
	switch rest[0] {
	case "showhold":
		for _, n := range st.Names() {
			if st[n].Want == "hold" && (len(rest) == 1 || contains(rest[1:], n)) {
				fmt.Fprintln(e.Stdout, n)
			}
		}
		return 0
	case "hold", "unhold":
		if len(rest) == 1 {
			fmt.Fprintf(e.Stderr, "E: No packages found\n")
			return 100
		}
		avail := Available(e)
		for _, n := range rest[1:] {
			if _, ok := st[n]; !ok && len(avail[n]) == 0 {
				fmt.Fprintf(e.Stderr, "E: Unable to locate package %s\n", n)
				return 100
			}
		}
		for _, n := range rest[1:] {
			p, ok := st[n]
			hold := rest[0] == "hold"
			switch {
			case hold && ok && p.Want == "hold":
				fmt.Fprintf(e.Stdout, "%s was already set on hold.\n", n)
			case hold:
				if ok {
					p.Want = "hold"
				}
				fmt.Fprintf(e.Stdout, "%s set on hold.\n", n)
			case !ok || p.Want != "hold":
				fmt.Fprintf(e.Stdout, "%s was already not on hold.\n", n)
			default:
				p.Want = "install"
				fmt.Fprintf(e.Stdout, "Canceled hold on %s.\n", n)
			}
		}
		if err := st.Write(e); err != nil {
			fmt.Fprintf(e.Stderr, "E: %v\n", err)
			return 100
		}
		return 0
	case "showmanual", "showauto":
		return 0
	}
	fmt.Fprintf(e.Stderr, "E: Invalid operation %s\n", rest[0])
	return 100
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// AptCache is apt-cache madison|policy|show.
func AptCache(e Env, args []string) int {
	var rest []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		fmt.Fprintln(e.Stderr, "E: No command given")
		return 100
	}
	avail := Available(e)
	st, _ := ReadStatus(e)
	switch rest[0] {
	case "madison":
		for _, n := range rest[1:] {
			// An unknown package prints nothing, exit 0, as apt-cache does.
			for _, c := range avail[n] {
				fmt.Fprintf(e.Stdout, "%10s | %10s | %s\n", n, c.Version, c.Index)
			}
		}
		return 0
	case "policy":
		if len(rest) == 1 {
			fmt.Fprintln(e.Stdout, "Package files:\n 100 /var/lib/dpkg/status\n     release a=now")
			srcs, _ := ReadSources(e)
			for _, s := range srcs {
				if exists(e.Path(ListsDir + "/" + s.listName())) {
					fmt.Fprintf(e.Stdout, " 500 %s\n     release n=deb\n     origin pkgs.k8s.io\n", s.Index())
				}
			}
			fmt.Fprintln(e.Stdout, "Pinned packages:")
			return 0
		}
		for _, n := range rest[1:] {
			p, inst := st[n]
			if len(avail[n]) == 0 && !inst {
				fmt.Fprintf(e.Stderr, "N: Unable to locate package %s\n", n)
				continue
			}
			iv, cv := "(none)", "(none)"
			if inst {
				iv = p.Version
			}
			if len(avail[n]) > 0 {
				cv = avail[n][0].Version
			} else if inst {
				cv = p.Version
			}
			fmt.Fprintf(e.Stdout, "%s:\n  Installed: %s\n  Candidate: %s\n  Version table:\n", n, iv, cv)
			shown := false
			for _, c := range avail[n] {
				mark := "    "
				if inst && c.Version == p.Version {
					mark, shown = " ***", true
				}
				fmt.Fprintf(e.Stdout, "%s %s 500\n        500 %s\n", mark, c.Version, c.Index)
				if inst && c.Version == p.Version {
					fmt.Fprintln(e.Stdout, "        100 /var/lib/dpkg/status")
				}
			}
			if inst && !shown {
				fmt.Fprintf(e.Stdout, " *** %s 100\n        100 /var/lib/dpkg/status\n", p.Version)
			}
		}
		return 0
	case "show":
		rc := 0
		for _, n := range rest[1:] {
			if len(avail[n]) == 0 {
				fmt.Fprintf(e.Stderr, "N: Unable to locate package %s\nE: No packages found\n", n)
				rc = 100
				continue
			}
			for _, c := range avail[n] {
				fmt.Fprintf(e.Stdout, "Package: %s\nVersion: %s\nArchitecture: amd64\nDescription: %s\n\n", n, c.Version, c.Description)
			}
		}
		return rc
	}
	fmt.Fprintf(e.Stderr, "E: Invalid operation %s\n", rest[0])
	return 100
}

// InitNode installs kubeadm, kubelet and kubectl at version (e.g.
// "v1.27.6" -> 1.27.6-1.1), cri-tools and kubernetes-cni, holds the first
// three, configures the repository of that minor and fetches its lists,
// as a node prepared with the kubeadm install guide. It does nothing when
// dpkg's status file exists.
func InitNode(e Env, version string) error {
	if exists(e.Path(StatusFile)) {
		return nil
	}
	up := strings.TrimPrefix(version, "v")
	parts := strings.SplitN(up, ".", 3)
	minor := parts[0] + "." + parts[1]
	if err := layout.WriteFileAtomic(e.Path(SourcesFile), []byte(SourceLine(minor)+"\n"), 0o644); err != nil {
		return err
	}
	if err := layout.WriteFileAtomic(e.Path(Keyring), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n(runbook-lab: a stand-in for the pkgs.k8s.io key)\n-----END PGP PUBLIC KEY BLOCK-----\n"), 0o644); err != nil {
		return err
	}
	src := Source{URI: RepoURL(minor), Suite: "/"}
	pkgs, ok := RepoPackages(src.URI)
	if !ok {
		return fmt.Errorf("the lab has no package repository for Kubernetes %s (it has 1.26 to 1.31)", minor)
	}
	if err := os.MkdirAll(e.Path(ListsDir), 0o755); err != nil {
		return err
	}
	if _, err := writeList(e, src, pkgs); err != nil {
		return err
	}
	st := Status{}
	pick := func(name, prefix string) string {
		var best string
		for _, p := range pkgs {
			if p.Name == name && strings.HasPrefix(p.Version, prefix) && (best == "" || CompareVersions(p.Version, best) > 0) {
				best = p.Version
			}
		}
		return best
	}
	for _, n := range []string{"kubeadm", "kubelet", "kubectl"} {
		v := up + "-1.1"
		if pv := pick(n, up+"-"); pv != "" {
			v = pv
			// Prefer -1.1 as the install guide's time did.
			for _, p := range pkgs {
				if p.Name == n && p.Version == up+"-1.1" {
					v = p.Version
				}
			}
		}
		st[n] = &Installed{Name: n, Version: v, Want: "hold", Arch: "amd64", Description: descriptions[n]}
	}
	for _, n := range []string{"cri-tools", "kubernetes-cni"} {
		st[n] = &Installed{Name: n, Version: pick(n, ""), Want: "install", Arch: "amd64", Description: descriptions[n]}
	}
	return st.Write(e)
}
