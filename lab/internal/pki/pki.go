// Package pki creates a kubeadm-shaped PKI and the kubeconfig files of a
// lab: the cluster CA, the etcd CA and the front-proxy CA under
// /etc/kubernetes/pki of the first control plane, the leaf certificates
// kubeadm would issue, the service-account key pair, and admin.conf,
// controller-manager.conf and scheduler.conf.
//
// Keys are ECDSA P-256 (kubeadm's ECDSA-P256 encryption algorithm), which
// is fast to generate. It does not rotate or renew anything.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Validity of certificates, as kubeadm issues them.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
)

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Spec says what to issue for one lab.
type Spec struct {
	// NodeName and NodeIP of the control plane that serves the API and etcd.
	NodeName string
	NodeIP   string
	// APIServiceIP is the first address of the service CIDR (10.96.0.1).
	APIServiceIP string
}

// CertRequest is one leaf certificate.
type CertRequest struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []string
	Server       bool
	Client       bool
}

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
}

// NewCA makes a self-signed CA.
func NewCA(cn string, now time.Time) (KeyPair, error) {
	key, err := newKey()
	if err != nil {
		return KeyPair{}, err
	}
	sn, err := serial()
	if err != nil {
		return KeyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("create CA %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("parse CA %s: %w", cn, err)
	}
	return KeyPair{Cert: cert, Key: key}, nil
}

// Issue signs a leaf certificate with ca.
func (ca KeyPair) Issue(req CertRequest, now time.Time) (KeyPair, error) {
	key, err := newKey()
	if err != nil {
		return KeyPair{}, err
	}
	sn, err := serial()
	if err != nil {
		return KeyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     req.DNSNames,
	}
	for _, s := range req.IPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return KeyPair{}, fmt.Errorf("certificate %s: bad IP %q", req.CommonName, s)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue %s: %w", req.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("parse %s: %w", req.CommonName, err)
	}
	return KeyPair{Cert: cert, Key: key}, nil
}

// CertPEM encodes the certificate.
func (kp KeyPair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.Cert.Raw})
}

// KeyPEM encodes the private key (SEC 1, "EC PRIVATE KEY", as kubeadm writes).
func (kp KeyPair) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(kp.Key)
	if err != nil {
		return nil, fmt.Errorf("encode key of %s: %w", kp.Cert.Subject.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// Write stores base.crt and base.key under dir.
func (kp KeyPair) Write(dir, base string) error {
	key, err := kp.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, base+".crt"), kp.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("write %s.crt: %w", base, err)
	}
	if err := os.WriteFile(filepath.Join(dir, base+".key"), key, 0o600); err != nil {
		return fmt.Errorf("write %s.key: %w", base, err)
	}
	return nil
}

// ReadKeyPair loads base.crt and base.key from dir.
func ReadKeyPair(dir, base string) (KeyPair, error) {
	cb, err := os.ReadFile(filepath.Join(dir, base+".crt"))
	if err != nil {
		return KeyPair{}, fmt.Errorf("read certificate: %w", err)
	}
	kb, err := os.ReadFile(filepath.Join(dir, base+".key"))
	if err != nil {
		return KeyPair{}, fmt.Errorf("read key: %w", err)
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return KeyPair{}, fmt.Errorf("%s/%s: not PEM", dir, base)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return KeyPair{}, fmt.Errorf("parse %s.crt: %w", base, err)
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return KeyPair{}, fmt.Errorf("parse %s.key: %w", base, err)
	}
	return KeyPair{Cert: cert, Key: key}, nil
}

// Files lists, relative to /etc/kubernetes/pki, what Generate writes; part
// 2 and the docs rely on these names being kubeadm's.
var Files = []string{
	"ca.crt", "ca.key",
	"apiserver.crt", "apiserver.key",
	"apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
	"apiserver-etcd-client.crt", "apiserver-etcd-client.key",
	"front-proxy-ca.crt", "front-proxy-ca.key",
	"front-proxy-client.crt", "front-proxy-client.key",
	"sa.key", "sa.pub",
	"etcd/ca.crt", "etcd/ca.key",
	"etcd/server.crt", "etcd/server.key",
	"etcd/peer.crt", "etcd/peer.key",
	"etcd/healthcheck-client.crt", "etcd/healthcheck-client.key",
}

// Generate writes the whole PKI into pkiDir (a node's /etc/kubernetes/pki).
func Generate(pkiDir string, s Spec, now time.Time) error {
	ca, err := NewCA("kubernetes", now)
	if err != nil {
		return err
	}
	etcdCA, err := NewCA("etcd-ca", now)
	if err != nil {
		return err
	}
	fpCA, err := NewCA("front-proxy-ca", now)
	if err != nil {
		return err
	}
	etcdDir := filepath.Join(pkiDir, "etcd")
	nodeSANs := []string{s.NodeName, "localhost"}
	nodeIPs := []string{s.NodeIP, "127.0.0.1", "::1"}
	issue := []struct {
		ca   KeyPair
		dir  string
		base string
		req  CertRequest
	}{
		{ca, pkiDir, "apiserver", CertRequest{
			CommonName: "kube-apiserver",
			DNSNames: []string{s.NodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local", "localhost"},
			IPs:    []string{s.APIServiceIP, s.NodeIP, "127.0.0.1"},
			Server: true,
		}},
		{ca, pkiDir, "apiserver-kubelet-client", CertRequest{
			CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true}},
		{etcdCA, pkiDir, "apiserver-etcd-client", CertRequest{CommonName: "kube-apiserver-etcd-client", Client: true}},
		{fpCA, pkiDir, "front-proxy-client", CertRequest{CommonName: "front-proxy-client", Client: true}},
		{etcdCA, etcdDir, "server", CertRequest{CommonName: s.NodeName, DNSNames: nodeSANs, IPs: nodeIPs, Server: true, Client: true}},
		{etcdCA, etcdDir, "peer", CertRequest{CommonName: s.NodeName, DNSNames: nodeSANs, IPs: nodeIPs, Server: true, Client: true}},
		{etcdCA, etcdDir, "healthcheck-client", CertRequest{CommonName: "kube-etcd-healthcheck-client", Client: true}},
	}
	for _, w := range []struct {
		kp        KeyPair
		dir, base string
	}{{ca, pkiDir, "ca"}, {etcdCA, etcdDir, "ca"}, {fpCA, pkiDir, "front-proxy-ca"}} {
		if err := w.kp.Write(w.dir, w.base); err != nil {
			return err
		}
	}
	for _, i := range issue {
		kp, err := i.ca.Issue(i.req, now)
		if err != nil {
			return err
		}
		if err := kp.Write(i.dir, i.base); err != nil {
			return err
		}
	}
	return writeServiceAccountKeys(pkiDir)
}

func writeServiceAccountKeys(pkiDir string) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode sa.key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("encode sa.pub: %w", err)
	}
	if err := os.WriteFile(filepath.Join(pkiDir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write sa.key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(pkiDir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return fmt.Errorf("write sa.pub: %w", err)
	}
	return nil
}

// WriteKubeconfig issues a client certificate signed by the cluster CA in
// pkiDir and writes a kubeconfig with everything embedded, as kubeadm does.
func WriteKubeconfig(path, pkiDir, server, user string, orgs []string, now time.Time) error {
	ca, err := ReadKeyPair(pkiDir, "ca")
	if err != nil {
		return err
	}
	kp, err := ca.Issue(CertRequest{CommonName: user, Organization: orgs, Client: true}, now)
	if err != nil {
		return err
	}
	key, err := kp.KeyPEM()
	if err != nil {
		return err
	}
	const cluster = "kubernetes"
	ctxName := user + "@" + cluster
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca.CertPEM()}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM(), ClientKeyData: key}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user}
	cfg.CurrentContext = ctxName
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create dir for %s: %w", path, err)
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}
