package etcd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/steps/internal/noderun"
)

// localCopyPath is where copy_to puts a snapshot on this machine.
func localCopyPath(dir, name string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return filepath.Join(dir, name)
}

// copyOff streams the published snapshot off the node into dst, checking
// its SHA-256 against the node's before it takes the final name: a copy that
// does not match never looks like a good one.
func copyOff(ctx context.Context, req *engine.Request, r engine.Runner, src, sum, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("copy_to: %w", err)
	}
	part := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".part")
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("copy_to: %w", err)
	}
	defer os.Remove(part) // a no-op once renamed
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	cmd := req.Cmd("cat", src)
	cmd.Stdout = cw
	_, runErr := noderun.Run(ctx, req, r, cmd)
	syncErr := f.Sync()
	closeErr := f.Close()
	switch {
	case runErr != nil:
		return fmt.Errorf("copying %s off %s: %w", src, req.NodeName(), runErr)
	case cw.err != nil:
		return fmt.Errorf("copy_to: writing %s: %w", part, cw.err)
	case syncErr != nil || closeErr != nil:
		return fmt.Errorf("copy_to: writing %s: %v %v", part, syncErr, closeErr)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("copy of %s from %s arrived with SHA-256 %s, the node has %s (%d bytes received): not kept", src, req.NodeName(), got, sum, cw.n)
	}
	if err := os.WriteFile(dst+".sha256", []byte(sum+"  "+filepath.Base(dst)+"\n"), 0o600); err != nil {
		return fmt.Errorf("copy_to: %w", err)
	}
	if err := os.Rename(part, dst); err != nil {
		return fmt.Errorf("copy_to: %w", err)
	}
	req.Emit("snapshot_copied", fmt.Sprintf("%s copied to %s (%d bytes, sha256 verified)", src, dst, cw.n), nil)
	return nil
}

// countWriter counts what it writes and keeps the first error, so that a
// full disk is reported as such rather than as a broken SSH session.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
