// Package kube sets up Kubernetes clients the way kubectl does: the
// --kubeconfig flag or the plan's cluster block, else KUBECONFIG, else
// ~/.kube/config, else the in-cluster service account. It also resolves
// selector inventories against the cluster's nodes.
//
// It does not talk to nodes, and holds no state beyond the clients.
package kube

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Config loads a REST config. Explicit kubeconfig and context win; empty
// values follow kubectl's loading rules.
func Config(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) && kubeconfig == "" {
			if ic, icErr := rest.InClusterConfig(); icErr == nil {
				return ic, nil
			}
			return nil, errors.New("no Kubernetes configuration: set KUBECONFIG, create ~/.kube/config, give --kubeconfig or the plan's cluster { kubeconfig }, or run in a cluster")
		}
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.UserAgent = "runbook"
	// Maintenance runs make bursts of reads (one pod LIST per node); keep
	// client-side throttling out of the way of those, within reason.
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Inventories resolves selector inventories with one node LIST each.
type Inventories struct{ Client kubernetes.Interface }

// Resolve implements engine.Inventories.
func (i Inventories) Resolve(ctx context.Context, spec *plans.InventorySpec) ([]plans.Node, error) {
	if spec.Selector == nil {
		return spec.Static, nil
	}
	l, err := i.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: spec.Selector.String()})
	if err != nil {
		return nil, fmt.Errorf("listing nodes for inventory %q: %w", spec.Name, err)
	}
	return engine.SelectNodes(spec, ClusterNodes(l.Items))
}

// ClusterNodes converts API nodes to what inventories need.
func ClusterNodes(items []corev1.Node) []engine.ClusterNode {
	out := make([]engine.ClusterNode, 0, len(items))
	for _, n := range items {
		cn := engine.ClusterNode{Name: n.Name, Labels: n.Labels, Addresses: map[string]string{}}
		for _, a := range n.Status.Addresses {
			if _, seen := cn.Addresses[string(a.Type)]; !seen {
				cn.Addresses[string(a.Type)] = a.Address
			}
		}
		out = append(out, cn)
	}
	return out
}

// ReadNodeList reads a saved `kubectl get nodes -o json` (or -o yaml) for
// offline plans.
func ReadNodeList(path string) ([]engine.ClusterNode, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l corev1.NodeList
	if err := yaml.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s: not a node list (kubectl get nodes -o json): %w", path, err)
	}
	if l.Kind != "" && l.Kind != "List" && l.Kind != "NodeList" {
		return nil, fmt.Errorf("%s: holds a %s, not a node list (kubectl get nodes -o json)", path, l.Kind)
	}
	return ClusterNodes(l.Items), nil
}
