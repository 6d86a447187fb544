// Package kubelet simulates the kubelets of a lab's nodes in one process.
// Per node it registers the Node (kubeadm labels and taint, InternalIP =
// the node's loopback address), renews its Lease and posts status, follows
// the node's run/kubelet.json (package nodestate) for the running
// version and state, runs the pods bound to the node (Running and Ready
// with an address; graceful deletion finished after at most MaxGrace),
// and mirrors the static pods of the node's manifest directory.
//
// It runs no containers and serves no kubelet API (logs/exec do not
// work). Written for the lab instead of using kwok so that node state can
// follow plain files and restarts behave like a kubelet restart.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/nodestate"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

// Options tune the simulation. Zero values take the defaults.
type Options struct {
	// LeaseRenew is how often a Node Lease is renewed (kubelet: 10s).
	LeaseRenew time.Duration
	// StatusReport is how often unchanged status is posted anyway.
	StatusReport time.Duration
	// Poll is how often kubelet.json and the manifest dir are read.
	Poll time.Duration
	// RestartNotReady is how long a restarting kubelet reports NotReady.
	RestartNotReady time.Duration
	// MaxGrace caps a deleted pod's termination grace period.
	MaxGrace time.Duration
	// Workers process pod updates in parallel.
	Workers int
}

func (o *Options) defaults() {
	if o.LeaseRenew == 0 {
		o.LeaseRenew = 10 * time.Second
	}
	if o.StatusReport == 0 {
		o.StatusReport = time.Minute
	}
	if o.Poll == 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.RestartNotReady == 0 {
		o.RestartNotReady = 2 * time.Second
	}
	if o.MaxGrace == 0 {
		o.MaxGrace = 2 * time.Second
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
}

const nodeNameIndex = "spec.nodeName"

// Sim is the set of simulated kubelets.
type Sim struct {
	lab    layout.Lab
	client kubernetes.Interface
	log    *slog.Logger
	opts   Options

	nodes      map[string]*node
	pods       cache.SharedIndexInformer
	nodeLister corelisters.NodeLister
	queue      workqueue.TypedRateLimitingInterface[string]
}

// New prepares a simulation of every node in cfg.
func New(lab layout.Lab, cfg layout.Config, client kubernetes.Interface, log *slog.Logger, opts Options) *Sim {
	opts.defaults()
	s := &Sim{lab: lab, client: client, log: log, opts: opts, nodes: map[string]*node{}}
	for i, n := range cfg.Nodes {
		s.nodes[n.Name] = &node{sim: s, info: n, index: i, log: log.With("node", n.Name),
			ipOf: map[types.UID]string{}, ipUsed: map[string]types.UID{}}
	}
	return s
}

// Run simulates until ctx ends.
func (s *Sim) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(s.client, 0)
	s.pods = factory.Core().V1().Pods().Informer()
	if err := s.pods.AddIndexers(cache.Indexers{nodeNameIndex: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.NodeName == "" {
			return nil, nil
		}
		return []string{p.Spec.NodeName}, nil
	}}); err != nil {
		return fmt.Errorf("pod index: %w", err)
	}
	s.nodeLister = factory.Core().V1().Nodes().Lister()
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 5*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "pods"})
	defer s.queue.ShutDown()
	if _, err := s.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueue,
		UpdateFunc: func(_, obj any) { s.enqueue(obj) },
		DeleteFunc: s.forget,
	}); err != nil {
		return fmt.Errorf("pod handler: %w", err)
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache of %v did not sync", typ)
		}
	}
	var wg sync.WaitGroup
	for range s.opts.Workers {
		wg.Go(func() {
			for s.work(ctx) {
			}
		})
	}
	names := make([]string, 0, len(s.nodes))
	for n := range s.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		wg.Go(func() { s.nodes[n].run(ctx) })
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
	factory.Shutdown()
	return nil
}

func (s *Sim) enqueue(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || s.nodes[p.Spec.NodeName] == nil {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(p)
	if err == nil {
		s.queue.Add(key)
	}
}

func (s *Sim) forget(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if n := s.nodes[p.Spec.NodeName]; n != nil {
		n.releaseIP(p.UID)
	}
}

func (s *Sim) podsOn(nodeName string) []*corev1.Pod {
	objs, err := s.pods.GetIndexer().ByIndex(nodeNameIndex, nodeName)
	if err != nil {
		return nil
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

func (s *Sim) work(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	retryAfter, err := s.syncPod(ctx, key)
	switch {
	case err != nil:
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			s.log.Warn("pod sync failed", "pod", key, "err", err)
		}
		s.queue.AddRateLimited(key)
	case retryAfter > 0:
		s.queue.Forget(key)
		s.queue.AddAfter(key, retryAfter)
	default:
		s.queue.Forget(key)
	}
	return true
}

// syncPod brings one pod to what its node's kubelet would report; it
// returns a delay when the pod must be looked at again later.
func (s *Sim) syncPod(ctx context.Context, key string) (time.Duration, error) {
	obj, exists, err := s.pods.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return 0, err
	}
	pod := obj.(*corev1.Pod)
	n := s.nodes[pod.Spec.NodeName]
	if n == nil || !n.running() {
		return 0, nil // picked up again when the node's kubelet is back
	}
	if pod.DeletionTimestamp != nil {
		return n.finishDeletion(ctx, pod)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || podUpToDate(pod) {
		return 0, nil
	}
	podIP := n.info.IP
	if !pod.Spec.HostNetwork {
		if podIP, err = n.allocateIP(pod); err != nil {
			return 0, err
		}
	}
	updated := pod.DeepCopy()
	updated.Status = DesiredPodStatus(pod, n.info.IP, podIP, metav1.Now())
	_, err = s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	return 0, err
}

// node is one simulated kubelet.
type node struct {
	sim   *Sim
	info  layout.Node
	index int
	log   *slog.Logger

	mu        sync.Mutex
	readiness readiness
	version   string
	started   bool // the kubelet has posted status at least once
	readyAt   time.Time
	fileData  string
	ipOf      map[types.UID]string
	ipUsed    map[string]types.UID
	ipScanned bool

	dirty        bool // status changed and is not posted yet
	requeue      bool // pods need a sync once the status is posted
	lastLease    time.Time
	lastStatus   time.Time
	lastStatic   time.Time
	staticDigest string
	badFile      string
}

func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started && n.readiness == ready
}

func (n *node) run(ctx context.Context) {
	t := time.NewTicker(n.sim.opts.Poll)
	defer t.Stop()
	for {
		if err := n.step(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("kubelet step failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// step reads kubelet.json, moves the kubelet's state machine and does
// what is due: status, lease, static pods.
func (n *node) step(ctx context.Context) error {
	path := n.sim.lab.KubeletStateFile(n.info.Name)
	data, err := os.ReadFile(path)
	if err != nil {
		if n.badFile != err.Error() {
			n.badFile = err.Error()
			n.log.Warn("no kubelet state; leaving the node as it is", "err", err)
		}
		return nil
	}
	now := time.Now()
	if string(data) != n.fileData {
		st, err := nodestate.Read(path)
		if err != nil {
			if n.badFile != err.Error() {
				n.badFile = err.Error()
				n.log.Warn("bad kubelet state; leaving the node as it is", "err", err)
			}
			return nil
		}
		n.badFile = ""
		first := n.fileData == ""
		n.fileData = string(data)
		n.transition(st, first, now)
		n.dirty = true
	}
	n.mu.Lock()
	if n.readiness == starting && !now.Before(n.readyAt) {
		n.readiness = ready
		n.dirty, n.requeue = true, true
		n.log.Info("kubelet ready", "version", n.version)
	}
	r := n.readiness
	n.mu.Unlock()
	// Status is posted when it changed (until a post succeeds) and, while
	// the kubelet runs, periodically; a silent kubelet posts only the
	// Unknown conditions the node lifecycle controller would set.
	if n.dirty || (r != silent && now.Sub(n.lastStatus) >= n.sim.opts.StatusReport) {
		if err := n.postStatus(ctx); err != nil {
			return err
		}
		n.dirty = false
		if n.requeue {
			n.requeue = false
			n.requeuePods()
		}
	}
	if r == silent {
		return nil
	}
	if now.Sub(n.lastLease) >= n.sim.opts.LeaseRenew {
		if err := n.renewLease(ctx); err != nil {
			return err
		}
	}
	if r == ready {
		return n.syncStatic(ctx, now)
	}
	return nil
}

// transition applies a new kubelet.json. The first read after the
// simulator starts adopts the state as is (the simulator restarting is
// not the kubelet restarting); later changes are kubelet restarts.
func (n *node) transition(st nodestate.Kubelet, first bool, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	// A kubelet that is not running reports nothing, so the node keeps
	// showing the version it last ran.
	if st.State == nodestate.Running || n.version == "" {
		n.version = st.Version
	}
	switch {
	case st.State != nodestate.Running:
		n.readiness = silent
		n.log.Info("kubelet not running", "state", st.State)
	case first:
		n.readiness = ready
	default:
		n.readiness = starting
		n.readyAt = now.Add(n.sim.opts.RestartNotReady)
		n.log.Info("kubelet restarting", "version", st.Version)
	}
}

func (n *node) requeuePods() {
	for _, p := range n.sim.podsOn(n.info.Name) {
		n.sim.enqueue(p)
	}
}

// postStatus registers the node if needed and writes its status.
func (n *node) postStatus(ctx context.Context) error {
	n.mu.Lock()
	r, version := n.readiness, n.version
	n.mu.Unlock()
	nodes := n.sim.client.CoreV1().Nodes()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := nodes.Get(ctx, n.info.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if r == silent {
				return nil // a stopped kubelet registers nothing
			}
			cur, err = nodes.Create(ctx, NewNode(n.info), metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("register node: %w", err)
			}
			n.log.Info("node registered", "ip", n.info.IP)
		}
		if err != nil {
			return fmt.Errorf("get node: %w", err)
		}
		upd := cur.DeepCopy()
		ApplyNodeStatus(upd, n.info, r, version, metav1.Now())
		_, err = nodes.UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("post node status: %w", err)
	}
	n.mu.Lock()
	n.started = true
	n.mu.Unlock()
	n.lastStatus = time.Now()
	if r != silent {
		return n.renewLease(ctx)
	}
	return nil
}

func (n *node) renewLease(ctx context.Context) error {
	leases := n.sim.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, n.info.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		nodeObj, nerr := n.sim.client.CoreV1().Nodes().Get(ctx, n.info.Name, metav1.GetOptions{})
		if nerr != nil {
			return fmt.Errorf("lease owner: %w", nerr)
		}
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.info.Name, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: nodeObj.Name, UID: nodeObj.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(n.info.Name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
		}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create lease: %w", err)
		}
		n.lastLease = time.Now()
		return nil
	}
	if err != nil {
		return fmt.Errorf("get lease: %w", err)
	}
	l.Spec.RenewTime = &now
	l.Spec.HolderIdentity = ptr.To(n.info.Name)
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	n.lastLease = time.Now()
	return nil
}

// finishDeletion completes a graceful deletion once the (capped) grace
// period has passed since the delete request.
func (n *node) finishDeletion(ctx context.Context, pod *corev1.Pod) (time.Duration, error) {
	grace := 30 * time.Second
	if pod.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	requested := pod.DeletionTimestamp.Add(-grace)
	due := requested.Add(min(grace, n.sim.opts.MaxGrace))
	if wait := time.Until(due); wait > 0 {
		return wait, nil
	}
	err := n.sim.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return 0, fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return 0, nil
}

func (n *node) allocateIP(pod *corev1.Pod) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ip, ok := n.ipOf[pod.UID]; ok {
		return ip, nil
	}
	nodeObj, _ := n.sim.nodeLister.Get(n.info.Name)
	cidr := PodCIDR(nodeObj, n.index)
	if !n.ipScanned {
		// Adopt addresses of pods that ran before this process started.
		for _, p := range n.sim.podsOn(n.info.Name) {
			if p.Status.PodIP != "" && !p.Spec.HostNetwork {
				n.ipOf[p.UID] = p.Status.PodIP
				n.ipUsed[p.Status.PodIP] = p.UID
			}
		}
		n.ipScanned = true
		if ip, ok := n.ipOf[pod.UID]; ok {
			return ip, nil
		}
	}
	addrs, err := hostAddresses(cidr, 1<<16)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if _, used := n.ipUsed[a]; !used {
			n.ipUsed[a] = pod.UID
			n.ipOf[pod.UID] = a
			return a, nil
		}
	}
	return "", fmt.Errorf("pod CIDR %s of node %s is full", cidr, n.info.Name)
}

func (n *node) releaseIP(uid types.UID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ip, ok := n.ipOf[uid]; ok {
		delete(n.ipOf, uid)
		delete(n.ipUsed, ip)
	}
}

// staticPod is a manifest the node's kubelet runs.
type staticPod struct {
	pod  *corev1.Pod
	hash string
}

// ReadStaticPods reads a manifest directory as a kubelet does: regular,
// non-hidden files; undecodable ones are reported and skipped.
func ReadStaticPods(dir string) (map[string]staticPod, []error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, []error{err}
	}
	out := map[string]staticPod{}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p, err := staticpod.Parse(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		out[p.Namespace+"/"+p.Name] = staticPod{pod: p, hash: staticpod.Hash(data)}
	}
	return out, errs
}

// MirrorPod builds the API object a kubelet creates for a static pod.
func MirrorPod(sp *corev1.Pod, hash string, node *corev1.Node, seen time.Time) *corev1.Pod {
	p := sp.DeepCopy()
	p.Name = sp.Name + "-" + node.Name
	p.ResourceVersion, p.UID = "", ""
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[annotationHash] = hash
	p.Annotations[annotationMirror] = hash
	p.Annotations[annotationSource] = "file"
	p.Annotations[annotationSeen] = seen.UTC().Format(time.RFC3339Nano)
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID, Controller: ptr.To(true)}}
	p.Spec.NodeName = node.Name
	p.Status = corev1.PodStatus{}
	return p
}

// syncStatic keeps mirror pods in line with the manifest directory.
func (n *node) syncStatic(ctx context.Context, now time.Time) error {
	dir := n.sim.lab.ManifestDir(n.info.Name)
	want, errs := ReadStaticPods(dir)
	digest := fmt.Sprint(len(want))
	for k, sp := range want {
		digest += k + sp.hash
	}
	for _, e := range errs {
		digest += e.Error()
	}
	// Re-check every few seconds even without changes, to recreate mirror
	// pods someone deleted.
	if digest == n.staticDigest && now.Sub(n.lastStatic) < 3*time.Second {
		return nil
	}
	if digest != n.staticDigest {
		for _, e := range errs {
			n.log.Warn("ignoring static pod manifest", "err", e)
		}
	}
	n.staticDigest, n.lastStatic = digest, now
	have := map[string]*corev1.Pod{}
	for _, p := range n.sim.podsOn(n.info.Name) {
		if IsMirrorPod(p) {
			have[p.Namespace+"/"+strings.TrimSuffix(p.Name, "-"+n.info.Name)] = p
		}
	}
	pods := n.sim.client.CoreV1().Pods
	for k, p := range have {
		sp, ok := want[k]
		if ok && p.Annotations[annotationMirror] == sp.hash && p.DeletionTimestamp == nil {
			continue
		}
		if p.DeletionTimestamp != nil && !ok {
			continue // pod sync finishes the deletion
		}
		err := pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0),
			Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete mirror pod %s: %w", p.Name, err)
		}
		delete(have, k)
	}
	var nodeObj *corev1.Node
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := have[k]; ok {
			continue
		}
		if nodeObj == nil {
			var err error
			if nodeObj, err = n.sim.client.CoreV1().Nodes().Get(ctx, n.info.Name, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("mirror pods: %w", err)
			}
		}
		sp := want[k]
		mp := MirrorPod(sp.pod, sp.hash, nodeObj, now)
		if _, err := pods(mp.Namespace).Create(ctx, mp, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			n.log.Warn("create mirror pod", "pod", mp.Name, "err", err)
			n.staticDigest = "" // retry soon
		}
	}
	return nil
}
