package nodetools

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/runbookhq/runbook/lab/internal/bootstrap"
	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

// kubeadm's paths on a node.
const (
	AdminConf    = "/etc/kubernetes/admin.conf"
	KubeletConf  = "/etc/kubernetes/kubelet.conf"
	ManifestsDir = "/etc/kubernetes/manifests"
	KubeletCfg   = "/var/lib/kubelet/config.yaml"
)

const stackHint = "To see the stack trace of this error execute with --v=5 or higher"

// upgradeTimeout bounds how long upgrade apply/node wait for the
// apiserver to come back at the new version (kubeadm's is 5m).
var upgradeTimeout = 3 * time.Minute

type kerr struct{ msg string }

func (k kerr) Error() string { return k.msg }

func kfail(e Env, format string, a ...any) int {
	fmt.Fprintf(e.Stderr, format+"\n", a...)
	fmt.Fprintln(e.Stderr, stackHint)
	return 1
}

// kubeadmVersion is the installed kubeadm's version, "v1.28.0".
func kubeadmVersion(e Env) string {
	v, _ := installedVersion(e, "kubeadm")
	return "v" + Upstream(v)
}

var gitCommits = map[string]string{}

// Kubeadm is kubeadm version|upgrade plan|upgrade apply|upgrade node.
func Kubeadm(e Env, args []string) int {
	var pos []string
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
			continue
		}
		k, v, hasV := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch k {
		case "o", "output", "ignore-preflight-errors", "v", "config", "kubeconfig", "patches", "feature-gates", "certificate-renewal", "etcd-upgrade", "dry-run", "yes", "y", "force", "f", "allow-experimental-upgrades", "allow-release-candidate-upgrades", "print-config", "skip-phases":
		default:
			fmt.Fprintf(e.Stderr, "unknown flag: %s\n%s\n", a, stackHint)
			return 1
		}
		takesValue := map[string]bool{"o": true, "output": true, "ignore-preflight-errors": true, "v": true, "config": true, "kubeconfig": true, "patches": true, "feature-gates": true, "skip-phases": true}
		if takesValue[k] && !hasV {
			if i+1 >= len(args) {
				fmt.Fprintf(e.Stderr, "flag needs an argument: %s\n%s\n", a, stackHint)
				return 1
			}
			i++
			v = args[i]
		}
		if !hasV && !takesValue[k] {
			v = "true"
		}
		flags[k] = v
	}
	if len(pos) == 0 {
		fmt.Fprintln(e.Stdout, "kubeadm: easily bootstrap a secure Kubernetes cluster\n\nUsage:\n  kubeadm [command]\n\nAvailable Commands:\n  upgrade     Upgrade your cluster smoothly to a newer version with this command\n  version     Print the version of kubeadm")
		return 0
	}
	switch {
	case pos[0] == "version":
		return kubeadmVersionCmd(e, flags["o"]+flags["output"])
	case pos[0] == "upgrade" && len(pos) >= 2 && pos[1] == "plan":
		return upgradePlan(e, pos[2:])
	case pos[0] == "upgrade" && len(pos) >= 2 && pos[1] == "apply":
		yes := flags["y"] == "true" || flags["yes"] == "true" || flags["f"] == "true" || flags["force"] == "true"
		return upgradeApply(e, pos[2:], yes, flags["f"] == "true" || flags["force"] == "true", flags["dry-run"] == "true")
	case pos[0] == "upgrade" && len(pos) >= 2 && pos[1] == "node":
		return upgradeNode(e, flags["dry-run"] == "true")
	case pos[0] == "upgrade":
		fmt.Fprintln(e.Stdout, "Upgrade your cluster smoothly to a newer version with this command\n\nUsage:\n  kubeadm upgrade [flags]\n  kubeadm upgrade [command]\n\nAvailable Commands:\n  apply       Upgrade your Kubernetes cluster to the specified version\n  node        Upgrade commands for a node in the cluster\n  plan        Check which versions are available to upgrade to and validate whether your current cluster is upgradeable.")
		return 0
	}
	fmt.Fprintf(e.Stderr, "unknown command %q for \"kubeadm\"\n%s\n", pos[0], stackHint)
	return 1
}

func kubeadmVersionCmd(e Env, output string) int {
	v := kubeadmVersion(e)
	pv, err := utilversion.ParseSemantic(v)
	if err != nil {
		return kfail(e, "kubeadm version %q: %v", v, err)
	}
	info := map[string]string{
		"major": fmt.Sprint(pv.Major()), "minor": fmt.Sprint(pv.Minor()), "gitVersion": v,
		"gitCommit": "runbook-lab", "gitTreeState": "clean", "buildDate": "2023-08-15T10:20:15Z",
		"goVersion": "go1.20.7", "compiler": "gc", "platform": "linux/amd64",
	}
	switch output {
	case "short":
		fmt.Fprintln(e.Stdout, v)
	case "json":
		b, _ := json.MarshalIndent(map[string]any{"clientVersion": info}, "", "  ")
		fmt.Fprintln(e.Stdout, string(b))
	case "yaml":
		fmt.Fprintln(e.Stdout, "clientVersion:")
		for _, k := range []string{"buildDate", "compiler", "gitCommit", "gitTreeState", "gitVersion", "goVersion", "major", "minor", "platform"} {
			fmt.Fprintf(e.Stdout, "  %s: %q\n", k, info[k])
		}
	case "":
		fmt.Fprintf(e.Stdout, "kubeadm version: &version.Info{Major:%q, Minor:%q, GitVersion:%q, GitCommit:%q, GitTreeState:%q, BuildDate:%q, GoVersion:%q, Compiler:%q, Platform:%q}\n",
			info["major"], info["minor"], v, info["gitCommit"], "clean", info["buildDate"], info["goVersion"], "gc", "linux/amd64")
	default:
		return kfail(e, "error: invalid output format: %s", output)
	}
	return 0
}

func clientFor(e Env, conf string) (kubernetes.Interface, error) {
	path := e.Path(conf)
	if _, err := os.Stat(path); err != nil {
		return nil, kerr{fmt.Sprintf("couldn't create a Kubernetes client from file %q: failed to load admin kubeconfig: open %s: no such file or directory", conf, conf)}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 10 * time.Second
	rc.UserAgent = "kubeadm/" + kubeadmVersion(e)
	return kubernetes.NewForConfig(rc)
}

var kubeVersionLine = regexp.MustCompile(`(?m)^kubernetesVersion:\s*(\S+)\s*$`)

// clusterVersion reads kubeadm-config's kubernetesVersion.
func clusterVersion(ctx context.Context, cs kubernetes.Interface) (string, error) {
	cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubeadm-config", metav1.GetOptions{})
	if err != nil {
		return "", kerr{fmt.Sprintf("[upgrade/config] FATAL: failed to get config map: %v", err)}
	}
	m := kubeVersionLine.FindStringSubmatch(cm.Data["ClusterConfiguration"])
	if m == nil {
		return "", kerr{"[upgrade/config] FATAL: the ClusterConfiguration in kubeadm-config has no kubernetesVersion"}
	}
	return m[1], nil
}

func kubeletVersions(ctx context.Context, cs kubernetes.Interface) map[string]int {
	out := map[string]int{}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return out
	}
	for _, n := range nodes.Items {
		out[n.Status.NodeInfo.KubeletVersion]++
	}
	return out
}

func readConfigHeader(e Env) {
	fmt.Fprintln(e.Stdout, "[upgrade/config] Making sure the configuration is correct:\n[upgrade/config] Reading configuration from the cluster...\n[upgrade/config] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'")
}

func upgradePlan(e Env, args []string) int {
	ctx := context.Background()
	cs, err := clientFor(e, AdminConf)
	if err != nil {
		return kfail(e, "[upgrade/config] FATAL: %v", err)
	}
	readConfigHeader(e)
	fmt.Fprintln(e.Stdout, "[preflight] Running pre-flight checks.\n[upgrade] Running cluster health checks\n[upgrade] Fetching available versions to upgrade to")
	cv, err := cs.Discovery().ServerVersion()
	if err != nil {
		return kfail(e, "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n\t[ERROR ControlPlaneNodesReady]: couldn't reach the API server: %v\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`", err)
	}
	kv := kubeadmVersion(e)
	target := kv
	if len(args) > 0 {
		target = "v" + strings.TrimPrefix(args[0], "v")
	} else {
		fmt.Fprintf(e.Stdout, "[upgrade/versions] WARNING: Couldn't fetch latest stable version from the internet: unable to get URL \"https://dl.k8s.io/release/stable.txt\": Get \"https://dl.k8s.io/release/stable.txt\": dial tcp: lookup dl.k8s.io: no such host\n[upgrade/versions] WARNING: Falling back to current kubeadm version as latest stable version\n")
	}
	fmt.Fprintf(e.Stdout, "[upgrade/versions] Cluster version: %s\n[upgrade/versions] kubeadm version: %s\n", cv.GitVersion, kv)
	tv, err := utilversion.ParseSemantic(target)
	if err != nil {
		return kfail(e, "[upgrade/versions] FATAL: invalid version %q: %v", target, err)
	}
	cur, _ := utilversion.ParseSemantic(cv.GitVersion)
	if cur != nil && !tv.GreaterThan(cur) {
		fmt.Fprintln(e.Stdout, "\nAwesome, you're up-to-date! Enjoy!")
		return 0
	}
	fmt.Fprintf(e.Stdout, "[upgrade/versions] Target version: %s\n[upgrade/versions] Latest version in the v%d.%d series: %s\n\n", target, cur.Major(), cur.Minor(), cv.GitVersion)
	kubelets := kubeletVersions(ctx, cs)
	var kl []string
	for v := range kubelets {
		kl = append(kl, v)
	}
	sort.Strings(kl)
	fmt.Fprintln(e.Stdout, "Components that must be upgraded manually after you have upgraded the control plane with 'kubeadm upgrade apply':")
	fmt.Fprintln(e.Stdout, "COMPONENT   CURRENT       TARGET")
	for i, v := range kl {
		name := "kubelet"
		if i > 0 {
			name = ""
		}
		fmt.Fprintf(e.Stdout, "%-11s %-13s %s\n", name, fmt.Sprintf("%d x %s", kubelets[v], v), target)
	}
	etcdCur := staticpod.EtcdImageTag(cv.GitVersion)
	if b, err := os.ReadFile(e.Path(ManifestsDir + "/etcd.yaml")); err == nil {
		if pod, err := staticpod.Parse(b); err == nil {
			if t, err := staticpod.ImageVersion(pod); err == nil {
				etcdCur = t
			}
		}
	}
	fmt.Fprintln(e.Stdout, "\nUpgrade to the latest stable version:\n\nCOMPONENT                 CURRENT   TARGET")
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		fmt.Fprintf(e.Stdout, "%-25s %-9s %s\n", c, cv.GitVersion, target)
	}
	fmt.Fprintf(e.Stdout, "%-25s %-9s %s\n", "CoreDNS", bootstrap.CoreDNSVersion(cv.GitVersion), bootstrap.CoreDNSVersion(target))
	fmt.Fprintf(e.Stdout, "%-25s %-9s %s\n", "etcd", etcdCur, staticpod.EtcdImageTag(target))
	fmt.Fprintf(e.Stdout, "\nYou can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply %s\n\n", target)
	kvp, _ := utilversion.ParseSemantic(kv)
	if kvp != nil && kvp.LessThan(tv) {
		fmt.Fprintf(e.Stdout, "Note: Before you can perform this upgrade, you have to update kubeadm to %s.\n\n", target)
	}
	fmt.Fprintln(e.Stdout, "_____________________________________________________________________")
	return 0
}

// versionPolicies are kubeadm's EnforceVersionPolicies (1.28).
func versionPolicies(newV, clusterV, kubeadmV *utilversion.Version) (mandatory, skippable []string) {
	ns := "v" + newV.String()
	if newV.Minor() > clusterV.Minor()+1 {
		mandatory = append(mandatory, fmt.Sprintf("Specified version to upgrade to %q is too high; kubeadm can upgrade only 1 minor version at a time", ns))
	}
	if newV.Minor() < clusterV.Minor() && clusterV.Minor()-newV.Minor() > 1 {
		mandatory = append(mandatory, fmt.Sprintf("Specified version to downgrade to %q is too low; kubeadm can downgrade only 1 minor version at a time", ns))
	}
	if kubeadmV.Major() > newV.Major() || kubeadmV.Minor() > newV.Minor() {
		skippable = append(skippable, fmt.Sprintf("Kubeadm version %s can only be used to upgrade to Kubernetes version %d.%d", "v"+kubeadmV.String(), kubeadmV.Major(), kubeadmV.Minor()))
	}
	if kubeadmV.LessThan(newV) {
		if newV.Minor() > kubeadmV.Minor() {
			mandatory = append(mandatory, fmt.Sprintf("Specified version to upgrade to %q is at least one minor release higher than the kubeadm minor release (%d > %d). Such an upgrade is not supported", ns, newV.Minor(), kubeadmV.Minor()))
		} else {
			skippable = append(skippable, fmt.Sprintf("Specified version to upgrade to %q is higher than the kubeadm version %q. Upgrade kubeadm first using the tool you used to install kubeadm", ns, "v"+kubeadmV.String()))
		}
	}
	return mandatory, skippable
}

func formatErrs(errs []string) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\t- %s\n", e)
	}
	return b.String()
}

func upgradeApply(e Env, args []string, yes, force, dryRun bool) int {
	ctx := context.Background()
	if len(args) != 1 {
		return kfail(e, "[upgrade/version] FATAL: missing one or more required arguments. Required arguments: [version]")
	}
	target := "v" + strings.TrimPrefix(args[0], "v")
	nv, err := utilversion.ParseSemantic(target)
	if err != nil {
		return kfail(e, "[upgrade/version] FATAL: couldn't parse version %q: %v", args[0], err)
	}
	cs, err := clientFor(e, AdminConf)
	if err != nil {
		return kfail(e, "[upgrade/config] FATAL: %v", err)
	}
	readConfigHeader(e)
	cvs, err := clusterVersion(ctx, cs)
	if err != nil {
		return kfail(e, "%v", err)
	}
	fmt.Fprintln(e.Stdout, "[preflight] Running pre-flight checks.\n[upgrade] Running cluster health checks")
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		return kfail(e, "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n\t[ERROR ControlPlaneNodesReady]: couldn't list control-planes in cluster: %v\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`", err)
	}
	fmt.Fprintf(e.Stdout, "[upgrade/version] You have chosen to change the cluster version to %q\n", target)
	kv := kubeadmVersion(e)
	fmt.Fprintf(e.Stdout, "[upgrade/versions] Cluster version: %s\n[upgrade/versions] kubeadm version: %s\n", cvs, kv)
	cv, err := utilversion.ParseSemantic(cvs)
	if err != nil {
		return kfail(e, "[upgrade/versions] FATAL: Unable to fetch cluster version: %v", err)
	}
	kvp, err := utilversion.ParseSemantic(kv)
	if err != nil {
		return kfail(e, "[upgrade/versions] FATAL: Unable to fetch kubeadm version: %v", err)
	}
	mand, skip := versionPolicies(nv, cv, kvp)
	if len(mand) > 0 {
		return kfail(e, "[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n%s\nPlease fix the misalignments highlighted above and try upgrading again", formatErrs(mand))
	}
	if len(skip) > 0 {
		if !force {
			return kfail(e, "[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n%s\nCan be bypassed if you pass the --force flag", formatErrs(skip))
		}
		fmt.Fprintf(e.Stdout, "[upgrade/version] Found %d potential version compatibility errors but skipping since the --force flag is set: \n\n%s", len(skip), formatErrs(skip))
	}
	if !yes && !dryRun {
		fmt.Fprint(e.Stdout, "[upgrade] Are you sure you want to proceed? [y/N]: ")
		line, rerr := bufio.NewReader(e.Stdin).ReadString('\n')
		if ans := strings.ToLower(strings.TrimSpace(line)); (rerr != nil && rerr != io.EOF) || (ans != "y" && ans != "yes") {
			fmt.Fprintln(e.Stdout)
			return kfail(e, "won't proceed; the user didn't answer (Y|y) in order to continue")
		}
	}
	fmt.Fprintln(e.Stdout, "[upgrade/prepull] Pulling images required for setting up a Kubernetes cluster\n[upgrade/prepull] This might take a minute or two, depending on the speed of your internet connection\n[upgrade/prepull] You can also perform this action in beforehand using 'kubeadm config images pull'")
	fmt.Fprintf(e.Stdout, "[upgrade/apply] Upgrading your Static Pod-hosted control plane to version %q (timeout: 5m0s)...\n", target)
	if dryRun {
		fmt.Fprintln(e.Stdout, "[dryrun] Would write the upgraded static pod manifests\n[upgrade/successful] Finished dryrunning successfully!")
		return 0
	}
	stamp := e.Now().Format("2006-01-02-15-04-05")
	backup := "/etc/kubernetes/tmp/kubeadm-backup-manifests-" + stamp
	fmt.Fprintf(e.Stdout, "[upgrade/etcd] Upgrading to TLS for etcd\n[upgrade/staticpods] Writing new Static Pod manifests to \"/etc/kubernetes/tmp/kubeadm-upgraded-manifests%s\"\n", stamp)
	if e.Fault("kubeadm-fail") {
		wait := faultWait(e, "kubeadm-fail")
		_ = os.Remove(e.Lab.FaultFile(e.Node, "kubeadm-fail"))
		fmt.Fprintln(e.Stdout, "[upgrade/staticpods] Preparing for \"kube-apiserver\" upgrade")
		fmt.Fprintf(e.Stdout, "[upgrade/staticpods] Moved new manifest to \"/etc/kubernetes/manifests/kube-apiserver.yaml\" and backed up old manifest to \"%s/kube-apiserver.yaml\"\n", backup)
		fmt.Fprintln(e.Stdout, "[upgrade/staticpods] Waiting for the kubelet to restart the component\n[upgrade/staticpods] This can take up to 5m0s")
		time.Sleep(wait)
		fmt.Fprintf(e.Stdout, "[upgrade/staticpods] Moved upgraded manifest to \"/etc/kubernetes/manifests/kube-apiserver.yaml\" and backed up old manifest to \"%s/kube-apiserver.yaml\"\n", backup)
		return kfail(e, "[upgrade/apply] FATAL: couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state. Errors faced: failed to obtain static Pod hash for component kube-apiserver on Node %s: timed out waiting for the condition", e.Node)
	}
	md := e.Path(ManifestsDir)
	if err := os.MkdirAll(e.Path(backup), 0o700); err == nil {
		for _, c := range staticpod.Components {
			if b, err := os.ReadFile(filepath.Join(md, c+".yaml")); err == nil {
				_ = os.WriteFile(filepath.Join(e.Path(backup), c+".yaml"), b, 0o600)
			}
		}
	}
	if err := staticpod.SetManifestVersions(md, target); err != nil {
		return kfail(e, "[upgrade/apply] FATAL: couldn't upgrade control plane: %v", err)
	}
	for _, c := range staticpod.Components {
		fmt.Fprintf(e.Stdout, "[upgrade/staticpods] Preparing for %q upgrade\n", c)
		fmt.Fprintf(e.Stdout, "[upgrade/staticpods] Moved new manifest to \"/etc/kubernetes/manifests/%s.yaml\" and backed up old manifest to \"%s/%s.yaml\"\n", c, backup, c)
	}
	fmt.Fprintln(e.Stdout, "[upgrade/staticpods] Waiting for the kubelet to restart the component\n[upgrade/staticpods] This can take up to 5m0s")
	if err := waitVersion(ctx, cs, target, upgradeTimeout); err != nil {
		return kfail(e, "[upgrade/apply] FATAL: couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state. Errors faced: %v", err)
	}
	for _, c := range staticpod.Components {
		fmt.Fprintf(e.Stdout, "[apiclient] Found 1 Pods for label selector component=%s\n[upgrade/staticpods] Component %q upgraded successfully!\n", c, c)
	}
	if err := postUpgrade(ctx, e, cs, target); err != nil {
		return kfail(e, "[upgrade/postupgrade] FATAL post-upgrade error: %v", err)
	}
	if e.Fault("kubeadm-fail-after") {
		_ = os.Remove(e.Lab.FaultFile(e.Node, "kubeadm-fail-after"))
		return kfail(e, "[upgrade/postupgrade] FATAL post-upgrade error: [addons] failed to apply addon kube-proxy: unable to update daemonset: Put \"https://%s/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy\": http2: client connection lost", "control-plane")
	}
	fmt.Fprintf(e.Stdout, "\n[upgrade/successful] SUCCESS! Your cluster was upgraded to %q. Enjoy!\n\n[upgrade/kubelet] Now that your control plane is upgraded, please proceed with upgrading your kubelets if you haven't already done so.\n", target)
	return 0
}

func faultWait(e Env, fault string) time.Duration {
	b, _ := os.ReadFile(e.Lab.FaultFile(e.Node, fault))
	if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
		return d
	}
	return 10 * time.Second
}

func waitVersion(ctx context.Context, cs kubernetes.Interface, target string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		if v, err := cs.Discovery().ServerVersion(); err == nil {
			if v.GitVersion == target {
				if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err == nil {
					return nil
				}
				last = "apiserver " + target + " not ready"
			} else {
				last = "apiserver still reports " + v.GitVersion
			}
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %s waiting for the apiserver to report %s (%s)", timeout, target, last)
}

// postUpgrade uploads kubeadm-config with the new version, upgrades the
// kube-proxy addon's image and writes the kubelet config, retrying while
// the restarted apiserver settles.
func postUpgrade(ctx context.Context, e Env, cs kubernetes.Interface, target string) error {
	fmt.Fprintln(e.Stdout, "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace")
	err := retry(30*time.Second, func() error {
		cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubeadm-config", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cm.Data["ClusterConfiguration"] = kubeVersionLine.ReplaceAllString(cm.Data["ClusterConfiguration"], "kubernetesVersion: "+target)
		_, err = cs.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, "[kubelet] Creating a ConfigMap \"kubelet-config\" in namespace kube-system with the configuration for the kubelets in the cluster")
	if err := writeKubeletConfig(e, target); err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials\n[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token\n[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster")
	err = retry(30*time.Second, func() error {
		ds, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i, c := range ds.Spec.Template.Spec.Containers {
			if i := strings.LastIndex(c.Image, ":"); i > 0 && strings.Contains(c.Image, "kube-proxy") {
				c.Image = c.Image[:i] + ":" + target
			}
			ds.Spec.Template.Spec.Containers[i] = c
		}
		_, err = cs.AppsV1().DaemonSets("kube-system").Update(ctx, ds, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, "[addons] Applied essential addon: CoreDNS\n[addons] Applied essential addon: kube-proxy")
	return nil
}

func writeKubeletConfig(e Env, target string) error {
	fmt.Fprintf(e.Stdout, "[upgrade] Backing up kubelet config file to /etc/kubernetes/tmp/kubeadm-kubelet-config%s/config.yaml\n[kubelet-start] Writing kubelet configuration to file %q\n", e.Now().Format("2006-01-02-15-04-05"), KubeletCfg)
	cfg := fmt.Sprintf("# written by kubeadm upgrade (runbook-lab) for %s\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\nclusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\nstaticPodPath: /etc/kubernetes/manifests\n", target)
	return layout.WriteFileAtomic(e.Path(KubeletCfg), []byte(cfg), 0o644)
}

func retry(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second)
	}
}

func upgradeNode(e Env, dryRun bool) int {
	ctx := context.Background()
	conf := AdminConf
	if !exists(e.Path(conf)) {
		conf = KubeletConf
	}
	cs, err := clientFor(e, conf)
	if err != nil {
		return kfail(e, "%v", err)
	}
	fmt.Fprintln(e.Stdout, "[upgrade] Reading configuration from the cluster...\n[upgrade] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'")
	cv, err := clusterVersion(ctx, cs)
	if err != nil {
		return kfail(e, "%v", err)
	}
	fmt.Fprintln(e.Stdout, "[preflight] Running pre-flight checks")
	isCP := exists(e.Path(ManifestsDir + "/kube-apiserver.yaml"))
	if !isCP {
		fmt.Fprintln(e.Stdout, "[preflight] Skipping prepull. Not a control plane node.\n[upgrade] Skipping phase. Not a control plane node.")
	} else {
		fmt.Fprintln(e.Stdout, "[preflight] Pulling images required for setting up a Kubernetes cluster\n[preflight] This might take a minute or two, depending on the speed of your internet connection\n[preflight] You can also perform this action in beforehand using 'kubeadm config images pull'")
		fmt.Fprintf(e.Stdout, "[upgrade] Upgrading your Static Pod-hosted control plane instance to version %q...\n", cv)
		if !dryRun {
			before, _ := os.ReadFile(e.Path(ManifestsDir + "/kube-apiserver.yaml"))
			if err := staticpod.SetManifestVersions(e.Path(ManifestsDir), cv); err != nil {
				return kfail(e, "[upgrade/control-plane] FATAL: %v", err)
			}
			after, _ := os.ReadFile(e.Path(ManifestsDir + "/kube-apiserver.yaml"))
			if string(before) == string(after) {
				fmt.Fprintln(e.Stdout, "[upgrade/staticpods] Current and new manifests of kube-apiserver are equal, skipping upgrade")
			} else if e.Role() != "" && isFirstCP(e) {
				if err := waitVersion(ctx, cs, cv, upgradeTimeout); err != nil {
					return kfail(e, "[upgrade/control-plane] FATAL: couldn't complete the static pod upgrade: %v", err)
				}
			}
		}
		fmt.Fprintln(e.Stdout, "[upgrade] The control plane instance for this node was successfully updated!")
	}
	if !dryRun {
		if err := writeKubeletConfig(e, cv); err != nil {
			return kfail(e, "%v", err)
		}
	}
	fmt.Fprintln(e.Stdout, "[upgrade] The configuration for this node was successfully updated!\n[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.")
	return 0
}

func isFirstCP(e Env) bool {
	cfg, err := e.Lab.ReadConfig()
	if err != nil {
		return false
	}
	cp, err := cfg.FirstControlPlane()
	return err == nil && cp.Name == e.Node
}

var _ = errors.New
