// Package bootstrap does, against a freshly started lab apiserver, what
// `kubeadm init` does after the control plane is up: it uploads the
// kubeadm-config and kubelet-config ConfigMaps and creates the kube-proxy
// and CoreDNS addons, then seeds the lab's scenario once.
//
// Everything is create-if-absent, so it is safe to run on every
// supervisor start; it never updates an object (part 2's simulated
// kubeadm owns later changes).
package bootstrap

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"text/template"
	"time"

	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/scenario"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

//go:embed addons.yaml.tmpl
var addonsTemplate string

// Params feed the addons template.
type Params struct {
	Version              string
	PodCIDR              string
	DNSIP                string
	CoreDNSVersion       string
	ClusterConfiguration string
}

// CoreDNSVersion is the CoreDNS image tag kubeadm installs for a minor
// (approximately).
func CoreDNSVersion(k8sVersion string) string {
	v, err := utilversion.ParseSemantic(k8sVersion)
	if err != nil {
		return "v1.10.1"
	}
	switch {
	case v.Minor() <= 26:
		return "v1.9.3"
	case v.Minor() <= 28:
		return "v1.10.1"
	case v.Minor() <= 30:
		return "v1.11.1"
	case v.Minor() <= 32:
		return "v1.11.3"
	default:
		return "v1.12.0"
	}
}

// ClusterConfiguration renders kubeadm's ClusterConfiguration as kubeadm
// stores it in kubeadm-config (v1beta3 before 1.31, v1beta4 from 1.31).
func ClusterConfiguration(version, endpoint, podCIDR, serviceCIDR string) string {
	api := "kubeadm.k8s.io/v1beta3"
	if v, err := utilversion.ParseSemantic(version); err == nil && v.Minor() >= 31 {
		api = "kubeadm.k8s.io/v1beta4"
	}
	return strings.Join([]string{
		"apiServer: {}",
		"apiVersion: " + api,
		"certificatesDir: /etc/kubernetes/pki",
		"clusterName: kubernetes",
		"controlPlaneEndpoint: " + endpoint,
		"controllerManager: {}",
		"dns: {}",
		"etcd:",
		"  local:",
		"    dataDir: /var/lib/etcd",
		"imageRepository: registry.k8s.io",
		"kind: ClusterConfiguration",
		"kubernetesVersion: " + version,
		"networking:",
		"  dnsDomain: cluster.local",
		"  podSubnet: " + podCIDR,
		"  serviceSubnet: " + serviceCIDR,
		"scheduler: {}",
		"",
	}, "\n")
}

// Render renders the addons manifest.
func Render(p Params) ([]byte, error) {
	t, err := template.New("addons").Funcs(template.FuncMap{
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
		},
	}).Option("missingkey=error").Parse(addonsTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse addons template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render addons: %w", err)
	}
	return b.Bytes(), nil
}

// DNSIP is the tenth address of the service CIDR (10.96.0.10).
func DNSIP(serviceCIDR string) (string, error) {
	_, n, err := net.ParseCIDR(serviceCIDR)
	if err != nil {
		return "", fmt.Errorf("service CIDR %q: %w", serviceCIDR, err)
	}
	ip := n.IP.To4()
	if ip == nil {
		return "", fmt.Errorf("service CIDR %q is not IPv4", serviceCIDR)
	}
	out := make(net.IP, 4)
	copy(out, ip)
	out[3] += 10
	return out.String(), nil
}

// RESTConfig loads the lab's admin kubeconfig.
func RESTConfig(l layout.Lab) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("load lab kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}

// Run uploads the cluster objects and seeds the scenario once. It does not
// wait: it fails fast while the apiserver is not ready, and the supervisor
// retries it.
func Run(ctx context.Context, l layout.Lab, cfg layout.Config, log *slog.Logger) error {
	rc, err := RESTConfig(l)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("apiserver not ready: %w (%s)", err, strings.TrimSpace(string(body)))
	}
	cp, err := cfg.FirstControlPlane()
	if err != nil {
		return err
	}
	version := cfg.InitialVersion
	if data, err := os.ReadFile(l.ManifestDir(cp.Name) + "/" + staticpod.APIServer + ".yaml"); err == nil {
		if pod, err := staticpod.Parse(data); err == nil {
			if v, err := staticpod.KubeVersion(pod); err == nil {
				version = v
			}
		}
	}
	ports, err := l.ReadPorts()
	if err != nil {
		return err
	}
	dnsIP, err := DNSIP(cfg.ServiceCIDR)
	if err != nil {
		return err
	}
	endpoint := fmt.Sprintf("%s:%d", cp.IP, ports.APIServer)
	addons, err := Render(Params{
		Version: version, PodCIDR: cfg.PodCIDR, DNSIP: dnsIP,
		CoreDNSVersion:       CoreDNSVersion(version),
		ClusterConfiguration: ClusterConfiguration(version, endpoint, cfg.PodCIDR, cfg.ServiceCIDR),
	})
	if err != nil {
		return err
	}
	objs, err := scenario.Decode(addons, "addons")
	if err != nil {
		return err
	}
	if err := scenario.Apply(ctx, rc, objs); err != nil {
		return fmt.Errorf("cluster addons: %w", err)
	}
	if _, err := os.Stat(l.SeededFile()); err == nil {
		return nil
	}
	objs, err = scenario.Load(cfg.Scenario)
	if err != nil {
		return err
	}
	if err := scenario.Apply(ctx, rc, objs); err != nil {
		return fmt.Errorf("scenario %s: %w", cfg.Scenario, err)
	}
	log.Info("scenario seeded", "scenario", cfg.Scenario, "objects", len(objs))
	return os.WriteFile(l.SeededFile(), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}
