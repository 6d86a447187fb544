package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

func TestGenerateKubeadmLayout(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	spec := Spec{NodeName: "cp-1", NodeIP: "127.0.1.1", APIServiceIP: "10.96.0.1"}
	server := "https://127.0.1.1:6443"
	if err := Generate(dir, spec, now); err != nil {
		t.Fatal(err)
	}
	for _, f := range Files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	ca, err := ReadKeyPair(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	etcdCA, err := ReadKeyPair(filepath.Join(dir, "etcd"), "ca")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(caKP KeyPair, dir, base string, usage x509.ExtKeyUsage, dns string) *x509.Certificate {
		t.Helper()
		kp, err := ReadKeyPair(dir, base)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(caKP.Cert)
		if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: dns, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("%s: %v", base, err)
		}
		return kp.Cert
	}
	api := verify(ca, dir, "apiserver", x509.ExtKeyUsageServerAuth, "kubernetes.default.svc")
	var ips []string
	for _, ip := range api.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Contains(ips, "127.0.1.1") || !slices.Contains(ips, "10.96.0.1") {
		t.Errorf("apiserver IP SANs %v", ips)
	}
	verify(etcdCA, filepath.Join(dir, "etcd"), "server", x509.ExtKeyUsageServerAuth, "cp-1")
	verify(etcdCA, dir, "apiserver-etcd-client", x509.ExtKeyUsageClientAuth, "")
	if _, err := ReadKeyPair(dir, "front-proxy-client"); err != nil {
		t.Error(err)
	}

	kc := filepath.Join(t.TempDir(), "admin.conf")
	if err := WriteKubeconfig(kc, dir, server, "kubernetes-admin", []string{"system:masters"}, now); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if cfg.Clusters[ctx.Cluster].Server != server || len(cfg.AuthInfos[ctx.AuthInfo].ClientCertificateData) == 0 {
		t.Errorf("kubeconfig %+v", cfg)
	}
}
