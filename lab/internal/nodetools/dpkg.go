package nodetools

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/runbookhq/runbook/lab/internal/layout"
)

// StatusFile is dpkg's database of installed packages.
const StatusFile = "/var/lib/dpkg/status"

// Installed is one package in dpkg's status file.
type Installed struct {
	Name, Version, Arch, Description string
	Want                             string // install or hold (dpkg's selection)
}

// Status is the dpkg database, by package name.
type Status map[string]*Installed

// ReadStatus reads the node's /var/lib/dpkg/status (a missing file is an
// empty database).
func ReadStatus(e Env) (Status, error) {
	st := Status{}
	f, err := os.Open(e.Path(StatusFile))
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cur *Installed
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			cur = nil
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		if k == "Package" {
			cur = &Installed{Name: v, Want: "install", Arch: "amd64"}
			st[v] = cur
			continue
		}
		if cur == nil {
			continue
		}
		switch k {
		case "Status":
			cur.Want = strings.Fields(v)[0]
		case "Version":
			cur.Version = v
		case "Architecture":
			cur.Arch = v
		case "Description":
			cur.Description = v
		}
	}
	return st, sc.Err()
}

// Write replaces the status file atomically.
func (st Status) Write(e Env) error {
	var b strings.Builder
	for _, n := range st.Names() {
		p := st[n]
		fmt.Fprintf(&b, "Package: %s\nStatus: %s ok installed\nPriority: optional\nSection: admin\nMaintainer: Kubernetes Authors <dev@kubernetes.io>\nArchitecture: %s\nVersion: %s\nDescription: %s\n\n",
			p.Name, p.Want, p.Arch, p.Version, p.Description)
	}
	return layout.WriteFileAtomic(e.Path(StatusFile), []byte(b.String()), 0o644)
}

// Names lists the installed packages sorted.
func (st Status) Names() []string {
	var out []string
	for n := range st {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func installedVersion(e Env, name string) (string, bool) {
	st, err := ReadStatus(e)
	if err != nil {
		return "", false
	}
	p, ok := st[name]
	if !ok {
		return "", false
	}
	return p.Version, true
}

// abbrev is dpkg's db:Status-Abbrev: want, status, error flag ("hi " for
// a held installed package, "ii " otherwise).
func (p *Installed) abbrev() string {
	if p.Want == "hold" {
		return "hi "
	}
	return "ii "
}

// DpkgQuery is dpkg-query: -W/--show [-f|--showformat FMT] [PKG...], -l.
func DpkgQuery(e Env, args []string) int {
	format := "${binary:Package}\t${Version}\n"
	show, list := false, false
	var pkgs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-W" || a == "--show":
			show = true
		case a == "-l" || a == "--list":
			list = true
		case a == "-f" || a == "--showformat":
			if i+1 >= len(args) {
				fmt.Fprintf(e.Stderr, "dpkg-query: error: option '%s' requires a value\n\nUse --help for help about querying packages.\n", a)
				return 2
			}
			i++
			format = args[i]
		case strings.HasPrefix(a, "-f") && len(a) > 2:
			// dpkg's option parser takes -f=FMT like -fFMT.
			format = strings.TrimPrefix(a[2:], "=")
		case strings.HasPrefix(a, "--showformat="):
			format = strings.TrimPrefix(a, "--showformat=")
		case strings.HasPrefix(a, "-") && a != "-":
			fmt.Fprintf(e.Stderr, "dpkg-query: error: unknown option %s\n\nUse --help for help about querying packages.\n", a)
			return 2
		default:
			pkgs = append(pkgs, a)
		}
	}
	st, err := ReadStatus(e)
	if err != nil {
		fmt.Fprintf(e.Stderr, "dpkg-query: error: %v\n", err)
		return 2
	}
	if list {
		return dpkgList(e, st, pkgs)
	}
	if !show {
		fmt.Fprintln(e.Stderr, "dpkg-query: error: need an action option\n\nUse --help for help about querying packages.")
		return 2
	}
	matches, missing := match(st, pkgs)
	for _, p := range matches {
		fmt.Fprint(e.Stdout, expandFormat(format, p))
	}
	for _, m := range missing {
		fmt.Fprintf(e.Stderr, "dpkg-query: no packages found matching %s\n", m)
	}
	if len(missing) > 0 {
		return 1
	}
	return 0
}

func match(st Status, pats []string) (out []*Installed, missing []string) {
	if len(pats) == 0 {
		for _, n := range st.Names() {
			out = append(out, st[n])
		}
		return out, nil
	}
	seen := map[string]bool{}
	for _, pat := range pats {
		found := false
		for _, n := range st.Names() {
			if ok, _ := path.Match(pat, n); ok || pat == n+":"+st[n].Arch {
				found = true
				if !seen[n] {
					seen[n] = true
					out = append(out, st[n])
				}
			}
		}
		if !found {
			missing = append(missing, pat)
		}
	}
	return out, missing
}

func expandFormat(f string, p *Installed) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c == '\\' && i+1 < len(f) {
			i++
			switch f[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte('\\')
				b.WriteByte(f[i])
			}
			continue
		}
		if c == '$' && i+1 < len(f) && f[i+1] == '{' {
			end := strings.IndexByte(f[i:], '}')
			if end > 0 {
				field := f[i+2 : i+end]
				width := ""
				if k, w, ok := strings.Cut(field, ";"); ok {
					field, width = k, w
				}
				v := fieldValue(field, p)
				if width != "" {
					v = fmt.Sprintf("%"+width+"s", v)
				}
				b.WriteString(v)
				i += end
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

func fieldValue(field string, p *Installed) string {
	switch strings.ToLower(field) {
	case "package", "binary:package":
		return p.Name
	case "version":
		return p.Version
	case "architecture":
		return p.Arch
	case "db:status-abbrev":
		return p.abbrev()
	case "status":
		return p.Want + " ok installed"
	case "db:status-want":
		return p.Want
	case "db:status-status":
		return "installed"
	case "db:status-eflag":
		return "ok"
	case "description", "binary:summary":
		return p.Description
	case "section":
		return "admin"
	case "priority":
		return "optional"
	}
	return ""
}

func dpkgList(e Env, st Status, pats []string) int {
	matches, missing := match(st, pats)
	fmt.Fprint(e.Stdout, `Desired=Unknown/Install/Remove/Purge/Hold
| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend
|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)
||/ Name           Version      Architecture Description
+++-==============-============-============-=================================
`)
	for _, p := range matches {
		fmt.Fprintf(e.Stdout, "%-3s %-14s %-12s %-12s %s\n", strings.TrimSpace(p.abbrev()), p.Name, p.Version, p.Arch, p.Description)
	}
	for _, m := range missing {
		fmt.Fprintf(e.Stderr, "dpkg-query: no packages found matching %s\n", m)
	}
	if len(missing) > 0 {
		return 1
	}
	return 0
}

// Dpkg is dpkg -l / -s / --get-selections (queries only).
func Dpkg(e Env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.Stderr, "dpkg: error: need an action option\n\nType dpkg --help for help about installing and deinstalling packages [*];\nUse 'apt' or 'aptitude' for user-friendly package management;\nType dpkg -Dhelp for a list of dpkg debug flag values;\nType dpkg --force-help for a list of forcing options;\nType dpkg-deb --help for help about manipulating *.deb files;\n\nOptions marked [*] produce a lot of output - pipe it through 'less' or 'more' !")
		return 2
	}
	st, err := ReadStatus(e)
	if err != nil {
		fmt.Fprintf(e.Stderr, "dpkg: error: %v\n", err)
		return 2
	}
	switch args[0] {
	case "-l", "--list":
		return dpkgList(e, st, args[1:])
	case "-s", "--status":
		rc := 0
		for _, n := range args[1:] {
			p, ok := st[n]
			if !ok {
				fmt.Fprintf(e.Stderr, "dpkg-query: package '%s' is not installed and no information is available\nUse dpkg --info (= dpkg-deb --info) to examine archive files.\n", n)
				rc = 1
				continue
			}
			fmt.Fprintf(e.Stdout, "Package: %s\nStatus: %s ok installed\nPriority: optional\nSection: admin\nMaintainer: Kubernetes Authors <dev@kubernetes.io>\nArchitecture: %s\nVersion: %s\nDescription: %s\n", p.Name, p.Want, p.Arch, p.Version, p.Description)
		}
		return rc
	case "--get-selections":
		matches, _ := match(st, args[1:])
		for _, p := range matches {
			fmt.Fprintf(e.Stdout, "%s\t\t\t\t\t%s\n", p.Name, p.Want)
		}
		return 0
	}
	fmt.Fprintf(e.Stderr, "dpkg: error: the lab's dpkg only queries (-l, -s, --get-selections), not %s; use apt-get\n", args[0])
	return 2
}
