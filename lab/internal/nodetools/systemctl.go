package nodetools

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/nodestate"
)

// unit state file: which kubelet package version systemd last loaded
// (daemon-reload), to warn as systemd does when the unit changed on disk.
const unitStateFile = "/run/systemd-units.json"

type unitState struct {
	LoadedKubelet string `json:"loadedKubelet"`
}

var alwaysActive = map[string]string{
	"containerd": "containerd container runtime",
	"ssh":        "OpenBSD Secure Shell server",
	"sshd":       "OpenBSD Secure Shell server",
	"cron":       "Regular background program processing daemon",
}

func unitName(u string) string { return strings.TrimSuffix(u, ".service") }

// kubeletActive maps the kubelet state to systemd's ActiveState.
func kubeletActive(k nodestate.Kubelet) string {
	switch k.State {
	case nodestate.Running:
		return "active"
	case nodestate.Broken:
		return "failed"
	}
	return "inactive"
}

// Systemctl is systemctl daemon-reload|start|stop|restart|status|is-active
// for the kubelet (kubelet.json) and a few always-running units.
func Systemctl(e Env, args []string) int {
	quiet := false
	var rest []string
	for _, a := range args {
		switch {
		case a == "-q" || a == "--quiet":
			quiet = true
		case strings.HasPrefix(a, "-"):
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		fmt.Fprintln(e.Stderr, "systemctl: the lab's systemctl needs a command (daemon-reload, start, stop, restart, status, is-active)")
		return 1
	}
	verb, units := rest[0], rest[1:]
	kfile := e.Path("/run/kubelet.json")
	_, kubeletInstalled := installedVersion(e, "kubelet")
	known := func(u string) bool {
		u = unitName(u)
		_, ok := alwaysActive[u]
		return ok || (u == "kubelet" && kubeletInstalled)
	}
	switch verb {
	case "daemon-reload":
		v, _ := installedVersion(e, "kubelet")
		_ = layout.WriteJSON(e.Path(unitStateFile), unitState{LoadedKubelet: v})
		return 0
	case "is-active":
		if len(units) == 0 {
			fmt.Fprintln(e.Stderr, "Too few arguments.")
			return 1
		}
		rc := 0
		for _, u := range units {
			st := "inactive"
			switch {
			case !known(u):
			case unitName(u) == "kubelet":
				if k, err := nodestate.Read(kfile); err == nil {
					st = kubeletActive(k)
				}
			default:
				st = "active"
			}
			if st != "active" {
				rc = 3
			}
			if !quiet {
				fmt.Fprintln(e.Stdout, st)
			}
		}
		return rc
	case "start", "stop", "restart", "try-restart", "reload-or-restart":
		if len(units) == 0 {
			fmt.Fprintln(e.Stderr, "Too few arguments.")
			return 1
		}
		for _, u := range units {
			if !known(u) {
				fmt.Fprintf(e.Stderr, "Failed to %s %s.service: Unit %s.service not found.\n", verb, unitName(u), unitName(u))
				return 5
			}
		}
		for _, u := range units {
			if unitName(u) != "kubelet" {
				continue
			}
			k, err := nodestate.Read(kfile)
			if err != nil {
				fmt.Fprintf(e.Stderr, "Failed to %s kubelet.service: %v\n", verb, err)
				return 1
			}
			if verb == "stop" {
				k.State = nodestate.Stopped
			} else {
				if verb == "try-restart" && k.State != nodestate.Running {
					continue
				}
				v, _ := installedVersion(e, "kubelet")
				var us unitState
				_ = layout.ReadJSON(e.Path(unitStateFile), &us)
				if us.LoadedKubelet != "" && us.LoadedKubelet != v {
					fmt.Fprintln(e.Stderr, "Warning: The unit file, source configuration file or drop-ins of kubelet.service changed on disk. Run 'systemctl daemon-reload' to reload units.")
				}
				k.Version = "v" + Upstream(v)
				k.State = nodestate.Running
				if e.Fault("kubelet-broken") {
					k.State = nodestate.Broken
				}
			}
			k.RestartedAt = e.Now().UTC().Format(time.RFC3339Nano)
			if err := nodestate.Write(kfile, k); err != nil {
				fmt.Fprintf(e.Stderr, "Failed to %s kubelet.service: %v\n", verb, err)
				return 1
			}
		}
		return 0
	case "status":
		rc := 0
		if len(units) == 0 {
			units = []string{"kubelet"}
		}
		for _, u := range units {
			n := unitName(u)
			if !known(u) {
				fmt.Fprintf(e.Stderr, "Unit %s.service could not be found.\n", n)
				rc = 4
				continue
			}
			if n != "kubelet" {
				fmt.Fprintf(e.Stdout, "● %s.service - %s\n     Loaded: loaded (/lib/systemd/system/%s.service; enabled; preset: enabled)\n     Active: active (running)\n", n, alwaysActive[n], n)
				continue
			}
			k, err := nodestate.Read(kfile)
			if err != nil {
				fmt.Fprintf(e.Stderr, "Failed to get properties: %v\n", err)
				return 1
			}
			since := k.RestartedAt
			if t, err := time.Parse(time.RFC3339Nano, k.RestartedAt); err == nil {
				since = t.UTC().Format("Mon 2006-01-02 15:04:05 MST") + "; " + e.Now().Sub(t).Round(time.Second).String() + " ago"
			}
			var active string
			switch kubeletActive(k) {
			case "active":
				active = "active (running) since " + since
			case "failed":
				active = "failed (Result: exit-code) since " + since
			default:
				active = "inactive (dead) since " + since
				rc = 3
			}
			if k.State == nodestate.Broken {
				rc = 3
			}
			fmt.Fprintf(e.Stdout, `● kubelet.service - kubelet: The Kubernetes Node Agent
     Loaded: loaded (/lib/systemd/system/kubelet.service; enabled; preset: enabled)
    Drop-In: /usr/lib/systemd/system/kubelet.service.d
             └─10-kubeadm.conf
     Active: %s
       Docs: https://kubernetes.io/docs/
   Main PID: %d (kubelet)
      Tasks: 12 (limit: 9415)
     Memory: 42.0M
     CGroup: /system.slice/kubelet.service
             └─%d /usr/bin/kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml

(runbook-lab: simulated kubelet %s, state %s)
`, active, 4000+os.Getpid()%1000, 4000+os.Getpid()%1000, k.Version, k.State)
		}
		return rc
	}
	fmt.Fprintf(e.Stderr, "Unknown command verb %s.\n", verb)
	return 1
}

// Journalctl shows that the lab keeps no journal.
func Journalctl(e Env, args []string) int {
	fmt.Fprintln(e.Stdout, "-- No entries --")
	return 0
}
