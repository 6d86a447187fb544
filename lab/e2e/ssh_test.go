package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestNodesOverSSH runs the procedures of the seed as a person would type
// them, with the real ssh client and kubectl, each script against its own
// lab (testdata/nodes/*.txtar). In a script:
//
//	$LAB             the lab directory (ssh -F $LAB/ssh_config NODE ...)
//	$KUBECONFIG      the lab's admin kubeconfig
//	kubectl          the lab's kubectl (runbook-lab kubectl) on PATH
//	runbook-lab      the binary under test on PATH
//	$HOSTMARK        a directory made in the machine's /var/lib for this
//	                 script (isolation checks), removed afterwards
func TestNodesOverSSH(t *testing.T) {
	bin := binary(t)
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("skipping: no ssh client (install openssh-client; scripts/setup.sh does)")
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("skipping: no /usr/sbin/sshd (install openssh-server; scripts/setup.sh does)")
	}
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "nodes"),
		Setup: func(env *testscript.Env) error {
			binDir := filepath.Join(env.WorkDir, ".bin")
			if err := os.MkdirAll(binDir, 0o755); err != nil {
				return err
			}
			for _, n := range []string{"kubectl", "runbook-lab"} {
				if err := os.Symlink(bin, filepath.Join(binDir, n)); err != nil {
					return err
				}
			}
			dir := filepath.Join(env.WorkDir, "lab")
			mark, err := os.MkdirTemp("/var/lib", "runbook-lab-isolation-")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(mark) })
			env.Setenv("HOSTMARK", filepath.Base(mark))
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("LAB", dir)
			env.Setenv("KUBECONFIG", filepath.Join(dir, "kubeconfig"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			start := time.Now()
			out, err := exec.CommandContext(ctx, bin, "up", "--dir", dir).CombinedOutput()
			env.Defer(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				if out, err := exec.CommandContext(ctx, bin, "down", "--dir", dir).CombinedOutput(); err != nil {
					env.T().Log(fmt.Sprintf("down: %v\n%s", err, out))
				}
			})
			if err != nil {
				return fmt.Errorf("up (within 5m): %v\n%s", err, out)
			}
			env.T().Log(fmt.Sprintf("up took %.1fs: %s", time.Since(start).Seconds(), strings.TrimSpace(lastLine(string(out)))))
			return nil
		},
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "lab ready") {
			return l
		}
	}
	return lines[len(lines)-1]
}
