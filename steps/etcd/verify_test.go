package etcd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/engine"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"google.golang.org/protobuf/proto"
)

// boltDB writes a bbolt database shaped like etcd's: a "key" bucket of
// revision-keyed KeyValues and a "meta" bucket with the storage version.
// Without meta (withMeta false) it is a valid bbolt file but not an etcd
// database.
func boltDB(t *testing.T, path string, keys int, withMeta bool) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		kb, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		if withMeta {
			mb, err := tx.CreateBucket([]byte("meta"))
			if err != nil {
				return err
			}
			if err := mb.Put([]byte("storageVersion"), []byte("3.7.0")); err != nil {
				return err
			}
		}
		for i := 1; i <= keys; i++ {
			v, err := proto.Marshal(&mvccpb.KeyValue{Key: []byte(fmt.Sprintf("/registry/configmaps/default/cm-%d", i)), Value: []byte("v"), CreateRevision: int64(i), ModRevision: int64(i), Version: 1})
			if err != nil {
				return err
			}
			if err := kb.Put(mvcc.RevToBytes(mvcc.Revision{Main: int64(i)}, mvcc.NewRevBytes()), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// withDigest appends the SHA-256 etcd appends to a streamed snapshot.
func withDigest(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	if err := os.WriteFile(path, append(b, h[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshotFile writes a good snapshot holding n keys at revision n.
func snapshotFile(t *testing.T, path string, n int) {
	t.Helper()
	boltDB(t, path, n, true)
	withDigest(t, path)
}

// flip inverts the bits of the byte at off.
func flip(p string, off int64) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0xff
	f.WriteAt(b, off)
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestVerifySnapshot(t *testing.T) {
	tests := []struct {
		name    string
		make    func(t *testing.T, p string)
		wantErr string
	}{
		{"intact", func(t *testing.T, p string) { snapshotFile(t, p, 5) }, ""},
		{"truncated mid-page", func(t *testing.T, p string) {
			snapshotFile(t, p, 5)
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2+7)
		}, "not a whole snapshot"},
		{"truncated to whole pages plus 32 bytes", func(t *testing.T, p string) {
			snapshotFile(t, p, 5)
			os.Truncate(p, 4*4096+sha256.Size)
		}, "is corrupt"},
		{"digest cut off", func(t *testing.T, p string) {
			snapshotFile(t, p, 5)
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-sha256.Size)
		}, "not a whole snapshot"},
		{"one byte altered", func(t *testing.T, p string) {
			snapshotFile(t, p, 5)
			flip(p, 5000)
		}, "is corrupt"},
		{"digest matches but not a database", func(t *testing.T, p string) {
			os.WriteFile(p, []byte(strings.Repeat("not bbolt ", 2048)[:4*4096]), 0o600)
			withDigest(t, p)
		}, "does not verify"},
		{"bbolt but not etcd", func(t *testing.T, p string) {
			boltDB(t, p, 3, false)
			withDigest(t, p)
		}, "does not verify"},
		{"no keys", func(t *testing.T, p string) { snapshotFile(t, p, 0) }, "looks empty"},
		{"empty file", func(t *testing.T, p string) { os.WriteFile(p, nil, 0o600) }, "not a whole snapshot"},
		{"missing", func(t *testing.T, p string) {}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s.db")
			tt.make(t, p)
			v, err := VerifySnapshot(context.Background(), p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), p) {
					t.Errorf("the error does not name the file: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Revision != 5 || v.TotalKey != 5 || v.TotalSize <= 0 || v.Hash == 0 || v.Version != "3.7.0" {
				t.Errorf("status = %+v", v.Status)
			}
			if v.SHA256 != fileSHA(t, p) {
				t.Errorf("SHA256 = %s, the file's is %s", v.SHA256, fileSHA(t, p))
			}
		})
	}
}

func TestVerifySnapshotBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.db")
	snapshotFile(t, p, 5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := VerifySnapshot(ctx, p); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err = %v, want the cancellation", err)
	}
}

// A .part that does not verify is never published: no snapshot, no
// checksum, no .part left behind. A good one is published with a checksum
// sha256sum -c accepts.
func TestVerifyAndPublish(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(p string)
		wantErr string
	}{
		{"good", nil, ""},
		{"truncated", func(p string) { os.Truncate(p, 4096) }, "not a whole snapshot"},
		{"flipped byte", func(p string) { flip(p, 4096+100) }, "is corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			final := filepath.Join(dir, "etcd-snapshot-20240101-020000.db")
			part := filepath.Join(dir, ".etcd-snapshot-20240101-020000.db.part")
			snapshotFile(t, part, 5)
			if tt.corrupt != nil {
				tt.corrupt(part)
			}
			v, err := verifyAndPublish(context.Background(), part, final)
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if len(names) != 0 {
					t.Errorf("a snapshot that does not verify left %v", names)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(names, " ") != "etcd-snapshot-20240101-020000.db etcd-snapshot-20240101-020000.db.sha256" {
				t.Errorf("dir holds %v", names)
			}
			sum, _ := os.ReadFile(final + ".sha256")
			if want := fileSHA(t, final) + "  etcd-snapshot-20240101-020000.db\n"; string(sum) != want || v.SHA256 != fileSHA(t, final) {
				t.Errorf(".sha256 = %q, want %q (output %s)", sum, want, v.SHA256)
			}
			if _, err := verifyPublished(context.Background(), final); err != nil {
				t.Errorf("verifyPublished: %v", err)
			}
			os.WriteFile(final+".sha256", []byte(strings.Repeat("0", 64)+"  x\n"), 0o600)
			if _, err := verifyPublished(context.Background(), final); err == nil || !strings.Contains(err.Error(), "its .sha256 says") {
				t.Errorf("verifyPublished with a wrong checksum: %v", err)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2024, 6, 10, 2, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	snap := func(name string, age time.Duration) snapFile {
		return snapFile{Path: "/b/" + name, ModTime: now.Add(-age)}
	}
	four := []snapFile{snap("etcd-snapshot-3.db", 3*day), snap("etcd-snapshot-0.db", 0), snap("etcd-snapshot-1.db", day), snap("etcd-snapshot-9.db", 9*day)}
	tests := []struct {
		name    string
		snaps   []snapFile
		keep    int
		maxAge  time.Duration
		current string
		want    string
	}{
		{"no retention", four, 0, 0, "/b/etcd-snapshot-0.db", ""},
		{"keep 2", four, 2, 0, "/b/etcd-snapshot-0.db", "/b/etcd-snapshot-3.db /b/etcd-snapshot-9.db"},
		{"keep 1", four, 1, 0, "/b/etcd-snapshot-0.db", "/b/etcd-snapshot-1.db /b/etcd-snapshot-3.db /b/etcd-snapshot-9.db"},
		{"keep more than there are", four, 10, 0, "/b/etcd-snapshot-0.db", ""},
		{"max_age 7 days", four, 0, 7 * day, "/b/etcd-snapshot-0.db", "/b/etcd-snapshot-9.db"},
		{"max_age 2 days", four, 0, 2 * day, "/b/etcd-snapshot-0.db", "/b/etcd-snapshot-3.db /b/etcd-snapshot-9.db"},
		{"keep 3 or max_age 2 days: either deletes", four, 3, 2 * day, "/b/etcd-snapshot-0.db", "/b/etcd-snapshot-3.db /b/etcd-snapshot-9.db"},
		{"the current one is never deleted, however old its time", four, 1, day, "/b/etcd-snapshot-9.db", "/b/etcd-snapshot-1.db /b/etcd-snapshot-3.db"},
		{"same time: newer name first", []snapFile{snap("etcd-snapshot-a.db", day), snap("etcd-snapshot-b.db", day), snap("etcd-snapshot-c.db", 0)}, 2, 0, "/b/etcd-snapshot-c.db", "/b/etcd-snapshot-a.db"},
		{"nothing there", nil, 3, day, "/b/x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(expired(tt.snaps, tt.keep, tt.maxAge, now, tt.current), " ")
			if got != tt.want {
				t.Errorf("expired = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestListSnapshotsAndLocalRetention(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-10 * 24 * time.Hour)
	files := map[string]time.Time{
		"etcd-snapshot-old.db":            old,
		"etcd-snapshot-old.db.sha256":     old,
		"etcd-snapshot-new.db":            time.Now(),
		"etcd-snapshot-new.db.sha256":     time.Now(),
		".etcd-snapshot-x.db.part":        old,
		"notes.txt":                       old,
		"etcd-snapshot-old.db.bak":        old,
		"other-etcd-snapshot-old.db":      old,
		"etcd-snapshot-old-link.db.other": old,
	}
	for n, mt := range files {
		p := filepath.Join(dir, n)
		os.WriteFile(p, []byte(n), 0o600)
		os.Chtimes(p, mt, mt)
	}
	os.Mkdir(filepath.Join(dir, "etcd-snapshot-dir.db"), 0o700)
	os.Symlink("/etc/passwd", filepath.Join(dir, "etcd-snapshot-link.db"))
	snaps, err := listSnapshots(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range snaps {
		names = append(names, filepath.Base(s.Path))
	}
	if strings.Join(names, " ") != "etcd-snapshot-new.db etcd-snapshot-old.db" {
		t.Fatalf("listSnapshots = %v", names)
	}
	if s, err := listSnapshots(filepath.Join(dir, "missing")); err != nil || len(s) != 0 {
		t.Errorf("a missing dir: %v %v", s, err)
	}

	var events []string
	req := directRequest(t, nil)
	req.Args.V = argsWith(t, map[string]any{"dir": dir, "max_age": "168h"})
	req.Env.Emit = func(e engine.Event) { events = append(events, e.Message) }
	if err := localRetention(req, dir, filepath.Join(dir, "etcd-snapshot-new.db")); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	var leftNames []string
	for _, e := range left {
		leftNames = append(leftNames, e.Name())
	}
	for _, gone := range []string{"etcd-snapshot-old.db", "etcd-snapshot-old.db.sha256"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("%s survived retention", gone)
		}
	}
	if len(leftNames) != len(files)-2+2 {
		t.Errorf("retention touched more than the old snapshot: %v", leftNames)
	}
	if len(events) != 1 || events[0] != "deleting old snapshots: "+filepath.Join(dir, "etcd-snapshot-old.db")+" "+filepath.Join(dir, "etcd-snapshot-old.db.sha256") {
		t.Errorf("events = %q", events)
	}
}
