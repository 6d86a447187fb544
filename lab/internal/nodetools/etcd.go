package nodetools

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
	"go.etcd.io/etcd/pkg/v3/cobrautl"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

// The etcd tools are the real etcdctl and etcdutl of the lab's etcd
// release (3.7). Two things are the lab's:
//
//   - Endpoints: the lab's etcd listens on the first control plane's IP
//     and a free port, not on 127.0.0.1:2379. On a control-plane node,
//     etcdctl rewrites an endpoint that names port 2379 on 127.0.0.1,
//     localhost or the node's own IP (and the default endpoint) to the
//     lab's etcd, keeping the scheme, so the seed's
//     --endpoints=https://127.0.0.1:2379 works. The etcd server
//     certificate holds the control plane's IP.
//   - Version: the etcd image tag in the node's static pod manifest is the
//     etcd the operator runs. Before 3.6, etcdctl still had snapshot
//     restore and snapshot status (deprecated, printing "Deprecated: Use
//     `etcdutl snapshot restore` instead."); from 3.6 they are gone from
//     etcdctl and the real 3.7 etcdctl answers (field case F07).

// EtcdVersion is the etcd tag the node's manifests run ("3.5.9-0"); on a
// node without an etcd manifest, the first control plane's.
func EtcdVersion(e Env) string {
	paths := []string{e.Path(ManifestsDir + "/etcd.yaml")}
	if cfg, err := e.Lab.ReadConfig(); err == nil {
		if cp, err := cfg.FirstControlPlane(); err == nil {
			paths = append(paths, e.Lab.ManifestDir(cp.Name)+"/etcd.yaml")
		}
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if pod, err := staticpod.Parse(b); err == nil {
			if t, err := staticpod.ImageVersion(pod); err == nil {
				return t
			}
		}
	}
	return "3.7.0"
}

func etcdBefore36(tag string) bool {
	parts := strings.SplitN(strings.TrimPrefix(tag, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, _ := strconv.Atoi(parts[0])
	mnr, _ := strconv.Atoi(parts[1])
	return maj < 3 || (maj == 3 && mnr < 6)
}

// etcdTarget is the lab's etcd client address, "127.0.1.1:PORT", and the
// node's own IP; ok is false off the control planes.
func etcdTarget(e Env) (target, nodeIP string, ok bool) {
	cfg, err := e.Lab.ReadConfig()
	if err != nil {
		return "", "", false
	}
	ports, err := e.Lab.ReadPorts()
	if err != nil {
		return "", "", false
	}
	cp, err := cfg.FirstControlPlane()
	if err != nil {
		return "", "", false
	}
	for _, n := range cfg.Nodes {
		if n.Name == e.Node && n.Role == layout.RoleControlPlane {
			return net.JoinHostPort(cp.IP, strconv.Itoa(ports.EtcdClient)), n.IP, true
		}
	}
	return "", "", false
}

// MapEndpoints rewrites a comma-separated endpoint list.
func MapEndpoints(list, target, nodeIP string) string {
	var out []string
	for _, ep := range strings.Split(list, ",") {
		scheme, hostport := "", ep
		if i := strings.Index(ep, "://"); i >= 0 {
			scheme, hostport = ep[:i+3], ep[i+3:]
		}
		hostport = strings.TrimSuffix(hostport, "/")
		host, port, err := net.SplitHostPort(hostport)
		if err == nil && port == "2379" && (host == "127.0.0.1" || host == "localhost" || host == "::1" || host == nodeIP) {
			ep = scheme + target
		}
		out = append(out, ep)
	}
	return strings.Join(out, ",")
}

var etcdctlGlobalFlags = map[string]bool{"endpoints": true, "cacert": true, "cert": true, "key": true, "user": true, "password": true,
	"dial-timeout": true, "command-timeout": true, "keepalive-time": true, "keepalive-timeout": true, "discovery-srv": true,
	"discovery-srv-name": true, "auth-jwt-token": true, "max-request-bytes": true, "max-recv-bytes": true}
var etcdctlGlobalBools = map[string]bool{"insecure-transport": true, "insecure-skip-tls-verify": true, "insecure-discovery": true, "debug": true, "hex": true}

// Etcdctl runs the real etcdctl with the lab's endpoint mapping and
// version behaviour.
func Etcdctl(e Env, args []string) int {
	args = append([]string(nil), args...)
	if target, ip, ok := etcdTarget(e); ok {
		given := false
		for i := 0; i < len(args); i++ {
			a := args[i]
			switch {
			case strings.HasPrefix(a, "--endpoints="):
				args[i] = "--endpoints=" + MapEndpoints(strings.TrimPrefix(a, "--endpoints="), target, ip)
				given = true
			case a == "--endpoints" && i+1 < len(args):
				args[i+1] = MapEndpoints(args[i+1], target, ip)
				given = true
			}
		}
		if v := os.Getenv("ETCDCTL_ENDPOINTS"); v != "" {
			os.Setenv("ETCDCTL_ENDPOINTS", MapEndpoints(v, target, ip))
			given = true
		}
		if !given {
			args = append(args, "--endpoints="+target)
		}
	}
	// etcdctl 3.5 and older still restored and read snapshots.
	if etcdBefore36(EtcdVersion(e)) {
		var pos []int
		for i, a := range args {
			if !strings.HasPrefix(a, "-") {
				pos = append(pos, i)
			}
		}
		if len(pos) >= 2 && args[pos[0]] == "snapshot" && (args[pos[1]] == "restore" || args[pos[1]] == "status") {
			fmt.Fprintf(e.Stderr, "Deprecated: Use `etcdutl snapshot %s` instead.\n\n", args[pos[1]])
			var ua []string
			for i := 0; i < len(args); i++ {
				a := strings.TrimLeft(args[i], "-")
				name, _, hasV := strings.Cut(a, "=")
				if strings.HasPrefix(args[i], "--") && etcdctlGlobalFlags[name] {
					if !hasV {
						i++
					}
					continue
				}
				if strings.HasPrefix(args[i], "--") && etcdctlGlobalBools[name] {
					continue
				}
				ua = append(ua, args[i])
			}
			return Etcdutl(e, ua)
		}
		if len(pos) >= 1 && args[pos[0]] == "version" {
			tag := strings.SplitN(EtcdVersion(e), "-", 2)[0]
			fmt.Fprintf(e.Stdout, "etcdctl version: %s\nAPI version: %s\n", tag, strings.Join(strings.SplitN(tag, ".", 3)[:2], "."))
			return 0
		}
	}
	// component-base's --version (registered by the lab's other parts) is not etcdctl's.
	_ = pflag.CommandLine.MarkHidden("version")
	os.Args = append([]string{"etcdctl"}, args...)
	ctlv3.MustStart()
	return 0
}

// Etcdutl runs the real etcdutl.
func Etcdutl(e Env, args []string) int {
	root := &cobra.Command{Use: "etcdutl", Short: "An administrative command line tool for etcd3.", SuggestFor: []string{"etcdutl"}}
	root.PersistentFlags().DurationVar(&etcdutl.FlockTimeout, "timeout", 10*time.Second, "time to wait to obtain a file lock on db file, 0 to block indefinitely")
	root.PersistentFlags().StringVarP(&etcdutl.OutputFormat, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	root.AddCommand(etcdutl.NewDefragCommand(), etcdutl.NewSnapshotCommand(), etcdutl.NewHashKVCommand(),
		etcdutl.NewVersionCommand(), etcdutl.NewCompletionCommand(), etcdutl.NewMigrateCommand())
	root.SetHelpTemplate(`{{.UsageString}}`)
	cobra.EnablePrefixMatching = true
	root.SetArgs(args)
	os.Args = append([]string{"etcdutl"}, args...)
	if err := root.Execute(); err != nil {
		cobrautl.ExitWithError(cobrautl.ExitError, err)
	}
	return 0
}
