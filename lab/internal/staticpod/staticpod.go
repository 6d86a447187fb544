// Package staticpod writes kubeadm-shaped static pod manifests for a lab's
// control plane and reads them back: the version a manifest runs (its
// image tag), the lab subcommand and arguments that stand in for its
// container (paths mapped through the pod's hostPath volumes into the
// node's directory), and a content hash for change detection.
//
// It is pure: it neither starts processes nor watches files.
package staticpod

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/yaml"
)

// Component names, as kubeadm names the manifests (<name>.yaml).
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
)

// Components lists the control-plane static pods in start order.
var Components = []string{Etcd, APIServer, ControllerManager, Scheduler}

// subcommands maps a container's command[0] to the lab binary's subcommand.
var subcommands = map[string]string{
	"etcd":                    "etcd",
	"kube-apiserver":          "apiserver",
	"kube-controller-manager": "controller-manager",
	"kube-scheduler":          "scheduler",
}

// Params are the lab facts a set of manifests needs.
type Params struct {
	Version     string // e.g. v1.27.6
	NodeName    string
	NodeIP      string
	APIPort     int
	EtcdClient  int
	EtcdPeer    int
	CMPort      int
	SchedPort   int
	ServiceCIDR string
	PodCIDR     string
}

// EtcdImageTag is the etcd image kubeadm pairs with a Kubernetes minor
// (approximately: kubeadm bumps it in patch releases too).
func EtcdImageTag(k8sVersion string) string {
	v, err := utilversion.ParseSemantic(k8sVersion)
	if err != nil {
		return "3.5.9-0"
	}
	table := map[uint]string{
		24: "3.5.6-0", 25: "3.5.6-0", 26: "3.5.6-0", 27: "3.5.7-0", 28: "3.5.9-0",
		29: "3.5.10-0", 30: "3.5.12-0", 31: "3.5.15-0", 32: "3.5.16-0", 33: "3.5.21-0",
		34: "3.6.4-0", 35: "3.6.5-0", 36: "3.6.6-0", 37: "3.6.6-0",
	}
	if t, ok := table[v.Minor()]; ok {
		return t
	}
	if v.Minor() < 24 {
		return "3.5.6-0"
	}
	return "3.6.6-0"
}

func hostPathVolume(name, p string, t corev1.HostPathType) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p, Type: &t}}}
}

func basePod(name, image string, cmd []string, cpu string, mounts []corev1.VolumeMount, vols []corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: "kube-system",
			Labels:    map[string]string{"component": name, "tier": "control-plane"},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            name,
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         cmd,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse(cpu),
				}},
				VolumeMounts: mounts,
			}},
			HostNetwork:       true,
			PriorityClassName: "system-node-critical",
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: vols,
		},
	}
}

// Manifests returns kubeadm-like static pods for one control-plane node,
// keyed by component name.
func Manifests(p Params) map[string]*corev1.Pod {
	ip := p.NodeIP
	etcdClientURL := fmt.Sprintf("https://%s:%d", ip, p.EtcdClient)
	etcdPeerURL := fmt.Sprintf("https://%s:%d", ip, p.EtcdPeer)
	pki := "/etc/kubernetes/pki"
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	fileOrCreate := corev1.HostPathFileOrCreate

	etcd := basePod(Etcd, "registry.k8s.io/etcd:"+EtcdImageTag(p.Version), []string{
		"etcd",
		"--advertise-client-urls=" + etcdClientURL,
		"--cert-file=" + pki + "/etcd/server.crt",
		"--client-cert-auth=true",
		"--data-dir=/var/lib/etcd",
		"--initial-advertise-peer-urls=" + etcdPeerURL,
		"--initial-cluster=" + p.NodeName + "=" + etcdPeerURL,
		"--key-file=" + pki + "/etcd/server.key",
		"--listen-client-urls=" + etcdClientURL,
		"--listen-peer-urls=" + etcdPeerURL,
		"--name=" + p.NodeName,
		"--peer-cert-file=" + pki + "/etcd/peer.crt",
		"--peer-client-cert-auth=true",
		"--peer-key-file=" + pki + "/etcd/peer.key",
		"--peer-trusted-ca-file=" + pki + "/etcd/ca.crt",
		"--snapshot-count=10000",
		"--trusted-ca-file=" + pki + "/etcd/ca.crt",
	}, "100m", []corev1.VolumeMount{
		{Name: "etcd-data", MountPath: "/var/lib/etcd"},
		{Name: "etcd-certs", MountPath: pki + "/etcd"},
	}, []corev1.Volume{
		hostPathVolume("etcd-certs", pki+"/etcd", dirOrCreate),
		hostPathVolume("etcd-data", "/var/lib/etcd", dirOrCreate),
	})
	etcd.Annotations = map[string]string{"kubeadm.kubernetes.io/etcd.advertise-client-urls": etcdClientURL}

	certMounts := []corev1.VolumeMount{
		{Name: "ca-certs", MountPath: "/etc/ssl/certs", ReadOnly: true},
		{Name: "k8s-certs", MountPath: pki, ReadOnly: true},
	}
	certVols := []corev1.Volume{
		hostPathVolume("ca-certs", "/etc/ssl/certs", dirOrCreate),
		hostPathVolume("k8s-certs", pki, dirOrCreate),
	}

	api := basePod(APIServer, "registry.k8s.io/kube-apiserver:"+p.Version, []string{
		"kube-apiserver",
		"--advertise-address=" + ip,
		"--allow-privileged=true",
		"--authorization-mode=Node,RBAC",
		"--bind-address=" + ip,
		"--client-ca-file=" + pki + "/ca.crt",
		"--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		// The lab advertises a loopback address, which the endpoint
		// reconciler of the kubernetes Service refuses.
		"--endpoint-reconciler-type=none",
		"--etcd-cafile=" + pki + "/etcd/ca.crt",
		"--etcd-certfile=" + pki + "/apiserver-etcd-client.crt",
		"--etcd-keyfile=" + pki + "/apiserver-etcd-client.key",
		"--etcd-servers=" + etcdClientURL,
		"--kubelet-client-certificate=" + pki + "/apiserver-kubelet-client.crt",
		"--kubelet-client-key=" + pki + "/apiserver-kubelet-client.key",
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--profiling=false",
		"--proxy-client-cert-file=" + pki + "/front-proxy-client.crt",
		"--proxy-client-key-file=" + pki + "/front-proxy-client.key",
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-client-ca-file=" + pki + "/front-proxy-ca.crt",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		fmt.Sprintf("--secure-port=%d", p.APIPort),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki + "/sa.pub",
		"--service-account-signing-key-file=" + pki + "/sa.key",
		"--service-cluster-ip-range=" + p.ServiceCIDR,
		"--tls-cert-file=" + pki + "/apiserver.crt",
		"--tls-private-key-file=" + pki + "/apiserver.key",
	}, "250m", certMounts, certVols)
	api.Annotations = map[string]string{"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": fmt.Sprintf("%s:%d", ip, p.APIPort)}

	cmConf := "/etc/kubernetes/controller-manager.conf"
	cm := basePod(ControllerManager, "registry.k8s.io/kube-controller-manager:"+p.Version, []string{
		"kube-controller-manager",
		"--allocate-node-cidrs=true",
		"--authentication-kubeconfig=" + cmConf,
		"--authorization-kubeconfig=" + cmConf,
		"--bind-address=127.0.0.1",
		"--client-ca-file=" + pki + "/ca.crt",
		"--cluster-cidr=" + p.PodCIDR,
		"--cluster-name=kubernetes",
		"--cluster-signing-cert-file=" + pki + "/ca.crt",
		"--cluster-signing-key-file=" + pki + "/ca.key",
		"--controllers=*,bootstrapsigner,tokencleaner",
		"--kubeconfig=" + cmConf,
		"--leader-elect=true",
		"--profiling=false",
		"--requestheader-client-ca-file=" + pki + "/front-proxy-ca.crt",
		"--root-ca-file=" + pki + "/ca.crt",
		fmt.Sprintf("--secure-port=%d", p.CMPort),
		"--service-account-private-key-file=" + pki + "/sa.key",
		"--service-cluster-ip-range=" + p.ServiceCIDR,
		"--use-service-account-credentials=true",
	}, "200m", append(append([]corev1.VolumeMount{}, certMounts...),
		corev1.VolumeMount{Name: "kubeconfig", MountPath: cmConf, ReadOnly: true}),
		append(append([]corev1.Volume{}, certVols...), hostPathVolume("kubeconfig", cmConf, fileOrCreate)))

	schedConf := "/etc/kubernetes/scheduler.conf"
	sched := basePod(Scheduler, "registry.k8s.io/kube-scheduler:"+p.Version, []string{
		"kube-scheduler",
		"--authentication-kubeconfig=" + schedConf,
		"--authorization-kubeconfig=" + schedConf,
		"--bind-address=127.0.0.1",
		"--kubeconfig=" + schedConf,
		"--leader-elect=true",
		"--profiling=false",
		fmt.Sprintf("--secure-port=%d", p.SchedPort),
	}, "100m", []corev1.VolumeMount{{Name: "kubeconfig", MountPath: schedConf, ReadOnly: true}},
		[]corev1.Volume{hostPathVolume("kubeconfig", schedConf, fileOrCreate)})

	return map[string]*corev1.Pod{Etcd: etcd, APIServer: api, ControllerManager: cm, Scheduler: sched}
}

// Marshal renders a manifest as YAML.
func Marshal(p *corev1.Pod) ([]byte, error) {
	b, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", p.Name, err)
	}
	return b, nil
}

// Parse decodes a manifest.
func Parse(data []byte) (*corev1.Pod, error) {
	var p corev1.Pod
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		// Real kubelets accept unknown fields with a warning; do the same.
		if err2 := yaml.Unmarshal(data, &p); err2 != nil {
			return nil, fmt.Errorf("decode manifest: %w", err2)
		}
	}
	if p.Name == "" {
		return nil, fmt.Errorf("decode manifest: metadata.name is empty")
	}
	if len(p.Spec.Containers) == 0 {
		return nil, fmt.Errorf("manifest %s: no containers", p.Name)
	}
	if p.Namespace == "" {
		p.Namespace = metav1.NamespaceDefault
	}
	return &p, nil
}

// Hash is the content hash kubelets put in kubernetes.io/config.hash.
func Hash(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:8])
}

// ImageVersion returns the tag of the pod's first container image, e.g.
// "v1.27.6" for registry.k8s.io/kube-apiserver:v1.27.6.
func ImageVersion(p *corev1.Pod) (string, error) {
	img := p.Spec.Containers[0].Image
	if at := strings.Index(img, "@"); at >= 0 {
		img = img[:at]
	}
	slash := strings.LastIndex(img, "/")
	colon := strings.LastIndex(img, ":")
	if colon <= slash {
		return "", fmt.Errorf("image %q of %s has no tag", p.Spec.Containers[0].Image, p.Name)
	}
	return img[colon+1:], nil
}

// KubeVersion is ImageVersion checked to be a Kubernetes version (vX.Y.Z).
func KubeVersion(p *corev1.Pod) (string, error) {
	tag, err := ImageVersion(p)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(tag, "v") {
		return "", fmt.Errorf("image tag %q of %s is not a Kubernetes version", tag, p.Name)
	}
	if _, err := utilversion.ParseSemantic(tag); err != nil {
		return "", fmt.Errorf("image tag %q of %s: %w", tag, p.Name, err)
	}
	return tag, nil
}

// Command is what the supervisor runs for a static pod: a subcommand of
// the lab binary and its arguments.
type Command struct {
	Subcommand string
	Args       []string
}

// ToCommand maps the pod's container command to a lab subcommand. Absolute
// paths in flag values go through the pod's volume mounts to hostPath
// volumes and then under nodeRoot, as a container runtime would resolve
// them; e.g. --data-dir=/var/lib/etcd with volume etcd-data at hostPath
// /var/lib/etcd-restored becomes <nodeRoot>/var/lib/etcd-restored.
func ToCommand(p *corev1.Pod, nodeRoot string) (Command, error) {
	c := p.Spec.Containers[0]
	argv := append(append([]string{}, c.Command...), c.Args...)
	if len(argv) == 0 {
		return Command{}, fmt.Errorf("manifest %s: container has no command", p.Name)
	}
	sub, ok := subcommands[path.Base(argv[0])]
	if !ok {
		return Command{}, fmt.Errorf("manifest %s: command %q is not one the lab can run", p.Name, argv[0])
	}
	m := newMapper(p, nodeRoot)
	out := make([]string, 0, len(argv)-1)
	for _, a := range argv[1:] {
		out = append(out, m.arg(a))
	}
	return Command{Subcommand: sub, Args: out}, nil
}

type mount struct{ container, host string }

type mapper struct {
	root   string
	mounts []mount // longest container path first
}

func newMapper(p *corev1.Pod, root string) mapper {
	host := map[string]string{}
	for _, v := range p.Spec.Volumes {
		if v.HostPath != nil {
			host[v.Name] = v.HostPath.Path
		}
	}
	m := mapper{root: root}
	for _, vm := range p.Spec.Containers[0].VolumeMounts {
		if h, ok := host[vm.Name]; ok {
			m.mounts = append(m.mounts, mount{container: path.Clean(vm.MountPath), host: path.Clean(h)})
		}
	}
	sort.SliceStable(m.mounts, func(i, j int) bool { return len(m.mounts[i].container) > len(m.mounts[j].container) })
	return m
}

// HostPath resolves an absolute path inside the container to the host
// (node) path, without the node root.
func (m mapper) HostPath(p string) string {
	p = path.Clean(p)
	for _, mt := range m.mounts {
		if p == mt.container {
			return mt.host
		}
		if strings.HasPrefix(p, mt.container+"/") {
			return path.Join(mt.host, strings.TrimPrefix(p, mt.container+"/"))
		}
	}
	return p
}

func (m mapper) arg(a string) string {
	if !strings.HasPrefix(a, "--") {
		return a
	}
	name, val, ok := strings.Cut(a, "=")
	if !ok || !strings.HasPrefix(val, "/") {
		return a
	}
	return name + "=" + filepath.Join(m.root, filepath.FromSlash(m.HostPath(val)))
}

// HostPathOf is exported for tests and the etcd data-dir lookups of part 2.
func HostPathOf(p *corev1.Pod, containerPath string) string {
	return newMapper(p, "").HostPath(containerPath)
}

// Write renders each manifest into dir as <name>.yaml.
func Write(dir string, pods map[string]*corev1.Pod) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create manifest dir: %w", err)
	}
	names := make([]string, 0, len(pods))
	for n := range pods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := Marshal(pods[n])
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, n+".yaml"), b, 0o600); err != nil {
			return fmt.Errorf("write manifest %s: %w", n, err)
		}
	}
	return nil
}

var imageTag = regexp.MustCompile(`(?m)^(\s*image:\s*\S*/(kube-apiserver|kube-controller-manager|kube-scheduler|etcd)):(\S+)\s*$`)

// RewriteImages replaces control-plane image tags in a manifest (etcd's
// with kubeadm's etcd tag for the version), leaving everything else byte
// for byte.
func RewriteImages(manifest []byte, version string) []byte {
	return imageTag.ReplaceAllFunc(manifest, func(m []byte) []byte {
		sub := imageTag.FindSubmatch(m)
		tag := version
		if string(sub[2]) == "etcd" {
			tag = EtcdImageTag(version)
		}
		return []byte(string(sub[1]) + ":" + tag)
	})
}

// SetManifestVersions rewrites every control-plane manifest in dir, as
// kubeadm upgrade does; manifests that are absent are skipped.
func SetManifestVersions(dir, version string) error {
	for _, c := range Components {
		p := filepath.Join(dir, c+".yaml")
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read manifest: %w", err)
		}
		nb := RewriteImages(b, version)
		if string(nb) == string(b) {
			continue
		}
		if err := writeFileAtomic(p, nb, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
