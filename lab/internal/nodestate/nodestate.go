// Package nodestate is the file contract between whatever changes a node
// (the lab's `up`, and in part 2 the simulated systemctl/apt/kubeadm over
// sshd) and the simulated kubelet that watches it.
//
// The file is <lab>/nodes/<name>/run/kubelet.json and describes the kubelet
// process that systemd is running on that node:
//
//	{"version": "v1.27.6", "state": "running", "restartedAt": "..."}
//
// It is not the installed package version (that is dpkg's business in part
// 2); it is what the running kubelet reports. Writers must replace the file
// atomically (write a temp file, rename).
package nodestate

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"

	"github.com/runbookhq/runbook/lab/internal/layout"
)

// Kubelet states.
const (
	// Running: the kubelet heartbeats and reports Ready.
	Running = "running"
	// Stopped: systemctl stop kubelet; no heartbeats, the node goes NotReady.
	Stopped = "stopped"
	// Broken: the kubelet crash-loops (e.g. a bad config after an upgrade);
	// the node stays NotReady until the state changes.
	Broken = "broken"
)

// Kubelet is the content of run/kubelet.json.
type Kubelet struct {
	// Version the running kubelet reports as nodeInfo.kubeletVersion.
	Version string `json:"version"`
	// State is Running, Stopped or Broken.
	State string `json:"state"`
	// RestartedAt is free text (an RFC 3339 time by convention). Any change
	// of the file while the state is running is a restart; writers bump this
	// field to restart the kubelet without changing the version.
	RestartedAt string `json:"restartedAt,omitempty"`
}

var semver = regexp.MustCompile(`^v\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]*)?$`)

// Validate reports whether k is well formed.
func (k Kubelet) Validate() error {
	if !semver.MatchString(k.Version) {
		return fmt.Errorf("kubelet version %q is not of the form v1.28.3", k.Version)
	}
	switch k.State {
	case Running, Stopped, Broken:
		return nil
	}
	return fmt.Errorf("kubelet state %q is not one of %s, %s, %s", k.State, Running, Stopped, Broken)
}

// Read reads and validates a kubelet.json file.
func Read(path string) (Kubelet, error) {
	var k Kubelet
	b, err := os.ReadFile(path)
	if err != nil {
		return k, fmt.Errorf("read kubelet state: %w", err)
	}
	if err := json.Unmarshal(b, &k); err != nil {
		return k, fmt.Errorf("decode kubelet state %s: %w", path, err)
	}
	if err := k.Validate(); err != nil {
		return k, fmt.Errorf("kubelet state %s: %w", path, err)
	}
	return k, nil
}

// Write validates k and replaces the file atomically.
func Write(path string, k Kubelet) error {
	if err := k.Validate(); err != nil {
		return err
	}
	return layout.WriteJSON(path, k)
}
