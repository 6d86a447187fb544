package etcd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// SnapshotPattern is the file name pattern retention considers: nothing
// else in a snapshot directory is ever deleted.
const SnapshotPattern = "etcd-snapshot-*.db"

// Verified is a snapshot file that passed VerifySnapshot.
type Verified struct {
	Status
	// SHA256 is the hex SHA-256 of the whole file, as sha256sum prints it.
	SHA256 string
	// Bytes is the file's size on disk (the database and etcd's 32-byte
	// digest); Status.TotalSize is the database's own size.
	Bytes int64
}

// hasDigest reports whether a file of n bytes can be a database of whole
// pages followed by the SHA-256 etcd appends to every snapshot it streams
// (etcd's own test, in etcdutl and the v3 client).
func hasDigest(n int64) bool { return n > sha256.Size && n%512 == sha256.Size }

// VerifySnapshot checks a snapshot file the way etcd checks one before it
// trusts it, in an order that never opens a damaged file as a database:
//
//  1. its size must be whole pages plus etcd's 32-byte SHA-256 digest, and
//     that digest must match the bytes before it: a truncated, cut-short or
//     altered file fails here;
//  2. etcdutl's snapshot status (go.etcd.io/etcd/etcdutl/v3/snapshot) then
//     opens it read-only, checks bbolt's page structure and reads the hash,
//     revision, number of keys and size that `etcdutl snapshot status`
//     reports;
//  3. a snapshot without a revision or without keys is refused as empty.
//
// ctx bounds the whole check; the SHA-256 of the whole file (what the
// .sha256 file records) is computed in the same read.
func VerifySnapshot(ctx context.Context, file string) (Verified, error) {
	var v Verified
	f, err := os.Open(file)
	if err != nil {
		return v, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return v, err
	}
	v.Bytes = fi.Size()
	if !fi.Mode().IsRegular() {
		return v, fmt.Errorf("%s is not a regular file", file)
	}
	if !hasDigest(v.Bytes) {
		return v, fmt.Errorf("%s: %d bytes is not a whole snapshot (whole pages of database, then etcd's %d-byte SHA-256): truncated, or not an etcd snapshot", file, v.Bytes, sha256.Size)
	}
	data, whole := sha256.New(), sha256.New()
	if err := copyCtx(ctx, io.MultiWriter(data, whole), io.LimitReader(f, v.Bytes-sha256.Size)); err != nil {
		return v, fmt.Errorf("reading %s: %w", file, err)
	}
	digest := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, digest); err != nil {
		return v, fmt.Errorf("reading %s: %w", file, err)
	}
	whole.Write(digest)
	if got := data.Sum(nil); !bytes.Equal(got, digest) {
		return v, fmt.Errorf("%s is corrupt: its data hashes to SHA-256 %x, the digest etcd appended says %x", file, got, digest)
	}
	v.SHA256 = hex.EncodeToString(whole.Sum(nil))

	st, err := statusCtx(ctx, file)
	if err != nil {
		return v, fmt.Errorf("%s does not verify: %w", file, err)
	}
	v.Status = Status{Hash: uint64(st.Hash), Revision: st.Revision, TotalKey: int64(st.TotalKey), TotalSize: st.TotalSize, Version: st.Version}
	if v.Revision <= 0 || v.TotalKey <= 0 {
		return v, fmt.Errorf("%s looks empty (revision %d, %d keys)", file, v.Revision, v.TotalKey)
	}
	return v, nil
}

// statusCtx is etcdutl's snapshot status bounded by ctx. It is not
// cancellable itself, so it runs aside; a panic in it (a bbolt file that is
// not an etcd database) is an error, not a crash.
func statusCtx(ctx context.Context, file string) (snapshot.Status, error) {
	type result struct {
		st  snapshot.Status
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.err = fmt.Errorf("not an etcd database (etcdutl's status failed reading it: %v)", p)
			}
			done <- r
		}()
		r.st, r.err = snapshot.NewV3(zap.NewNop()).Status(file)
	}()
	select {
	case r := <-done:
		return r.st, r.err
	case <-ctx.Done():
		return snapshot.Status{}, fmt.Errorf("snapshot status: %w", ctx.Err())
	}
}

// copyCtx copies until EOF, checking ctx between chunks.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) error {
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// verifyAndPublish verifies the temporary file part and publishes it as
// final; a file that does not verify is deleted, so it can never be taken
// for a snapshot.
func verifyAndPublish(ctx context.Context, part, final string) (Verified, error) {
	v, err := VerifySnapshot(ctx, part)
	if err == nil {
		err = publish(part, final, v.SHA256)
	}
	if err != nil {
		os.Remove(part)
		return v, err
	}
	return v, nil
}

// publish gives a verified temporary file its final name, with its checksum
// beside it in sha256sum format ("<hex>  <name>"). The checksum is written
// (as a hidden .part, fsync'd) and renamed first and the snapshot second,
// then the directory is fsync'd: a published snapshot always has its
// checksum, and a crash in between leaves at worst a .sha256 without its
// snapshot, never a snapshot nobody can check.
func publish(part, final, sum string) error {
	dir := filepath.Dir(final)
	sumPart := filepath.Join(dir, "."+filepath.Base(final)+".sha256.part")
	if err := writeSync(sumPart, []byte(sum+"  "+filepath.Base(final)+"\n")); err != nil {
		os.Remove(sumPart)
		return err
	}
	if err := os.Rename(sumPart, final+".sha256"); err != nil {
		os.Remove(sumPart)
		return fmt.Errorf("publishing %s.sha256: %w", final, err)
	}
	if err := os.Rename(part, final); err != nil {
		os.Remove(final + ".sha256")
		return fmt.Errorf("publishing %s: %w", final, err)
	}
	return syncDir(dir)
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// snapFile is a snapshot found in a directory.
type snapFile struct {
	Path    string
	ModTime time.Time
}

// listSnapshots returns the regular files of dir whose names match
// SnapshotPattern (a missing dir holds none).
func listSnapshots(dir string) ([]snapFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []snapFile
	for _, e := range entries {
		if ok, _ := filepath.Match(SnapshotPattern, e.Name()); !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, snapFile{Path: filepath.Join(dir, e.Name()), ModTime: fi.ModTime()})
	}
	return out, nil
}

// expired chooses the snapshots retention deletes: counting from the
// newest, those past the first keep (keep > 0), and those older than maxAge
// at now (maxAge > 0); never current, the one just written. The result is
// newest first; ties in time are broken by name, newest name first (names
// carry the time).
func expired(snaps []snapFile, keep int, maxAge time.Duration, now time.Time, current string) []string {
	if keep <= 0 && maxAge <= 0 {
		return nil
	}
	s := append([]snapFile(nil), snaps...)
	sort.SliceStable(s, func(i, j int) bool {
		if !s[i].ModTime.Equal(s[j].ModTime) {
			return s[i].ModTime.After(s[j].ModTime)
		}
		return s[i].Path > s[j].Path
	})
	var del []string
	for i, f := range s {
		if f.Path == current {
			continue
		}
		if (keep > 0 && i >= keep) || (maxAge > 0 && now.Sub(f.ModTime) > maxAge) {
			del = append(del, f.Path)
		}
	}
	return del
}

// withChecksums adds each snapshot's .sha256 after it.
func withChecksums(paths []string) []string {
	out := make([]string, 0, 2*len(paths))
	for _, p := range paths {
		out = append(out, p, p+".sha256")
	}
	return out
}

// removeAll deletes files, a missing one being no error.
func removeAll(paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// readChecksum reads the hex digest of a sha256sum-format file.
func readChecksum(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f[0]) != 2*sha256.Size {
		return "", fmt.Errorf("%s holds no SHA-256", file)
	}
	return f[0], nil
}
