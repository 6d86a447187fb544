package sshconn_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/runbookhq/runbook/internal/sshconn"
	"github.com/runbookhq/runbook/internal/sshconn/sshtest"
)

// BenchmarkRun measures one command (`true`) on an open connection: the
// per-command overhead of the transport (session open, exec, exit status).
func BenchmarkRun(b *testing.B) {
	s := sshtest.Start(b, sshtest.Options{})
	pool, _ := newPool(b)
	c, err := pool.Client(context.Background(), nodeConfig(b, "n1", s, ""))
	if err != nil {
		b.Fatal(err)
	}
	cmd := sshconn.Command{Argv: []string{"true"}}
	b.ResetTimer()
	for b.Loop() {
		res, err := c.Run(context.Background(), cmd)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("run: %v %+v", err, res)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/cmd")
}

const (
	fleetNodes       = 10
	fleetCmdsPerNode = 20
)

// BenchmarkFleet runs 20 commands on each of 10 nodes (10 sshd on
// 127.0.2.1..10), once with runbook's pooled transport (connection set-up
// included) and once with the OpenSSH client started once per command
// (`ssh -F cfg nodeN true`). Nodes run in parallel ("parallel") or one after
// the other ("serial"); commands on one node are sequential. Use
// -benchtime=Nx: one iteration is 200 commands.
func BenchmarkFleet(b *testing.B) {
	sshtest.Require(b)
	dir := b.TempDir()
	key, _, keyFile := sshtest.NewKey(b, dir, "id_fleet")
	var servers []*sshtest.Server
	var khLines []string
	var cfg strings.Builder
	for i := 1; i <= fleetNodes; i++ {
		s := sshtest.Start(b, sshtest.Options{Addr: fmt.Sprintf("127.0.2.%d", i), AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
		servers = append(servers, s)
		khLines = append(khLines, s.KnownHostsLine())
	}
	kh := writeKnownHosts(b, khLines...)
	for i, s := range servers {
		fmt.Fprintf(&cfg, `Host node%d
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ControlMaster no
  ControlPath none
  LogLevel ERROR
`, i+1, s.Host, s.Port, s.User, keyFile, kh)
	}
	sshConfig := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(sshConfig, []byte(cfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	sshBin, sshErr := exec.LookPath("ssh")

	forNodes := func(parallel bool, f func(i int) error) error {
		errs := make([]error, fleetNodes)
		if !parallel {
			for i := range fleetNodes {
				if errs[i] = f(i); errs[i] != nil {
					return errs[i]
				}
			}
			return nil
		}
		var wg sync.WaitGroup
		for i := range fleetNodes {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = f(i) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}

	for _, mode := range []string{"parallel", "serial"} {
		parallel := mode == "parallel"
		b.Run("runbook/"+mode, func(b *testing.B) {
			for b.Loop() {
				pool, _ := newPool(b)
				err := forNodes(parallel, func(i int) error {
					s := servers[i]
					c, err := pool.Client(context.Background(), sshconn.Config{
						Node: fmt.Sprintf("node%d", i+1), Address: s.Host, Port: s.Port, User: s.User,
						IdentityFiles: []string{keyFile}, KnownHostsFiles: []string{kh},
					})
					if err != nil {
						return err
					}
					for range fleetCmdsPerNode {
						res, err := c.Run(context.Background(), sshconn.Command{Argv: []string{"true"}})
						if err != nil || res.ExitCode != 0 {
							return fmt.Errorf("run: %v %+v", err, res)
						}
					}
					return nil
				})
				pool.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*fleetNodes*fleetCmdsPerNode), "ms/cmd")
		})
		b.Run("openssh/"+mode, func(b *testing.B) {
			if sshErr != nil {
				b.Skipf("ssh client not installed: %v", sshErr)
			}
			for b.Loop() {
				err := forNodes(parallel, func(i int) error {
					for range fleetCmdsPerNode {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						out, err := exec.CommandContext(ctx, sshBin, "-F", sshConfig, fmt.Sprintf("node%d", i+1), "true").CombinedOutput()
						cancel()
						if err != nil {
							return fmt.Errorf("ssh node%d: %v: %s", i+1, err, out)
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*fleetNodes*fleetCmdsPerNode), "ms/cmd")
		})
	}
}
