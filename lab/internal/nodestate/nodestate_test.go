package nodestate

import (
	"os"
	"path/filepath"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		k  Kubelet
		ok bool
	}{
		{Kubelet{Version: "v1.27.6", State: Running}, true},
		{Kubelet{Version: "v1.28.0", State: Stopped}, true},
		{Kubelet{Version: "v1.28.0-rc.1", State: Broken}, true},
		{Kubelet{Version: "1.27.6", State: Running}, false},
		{Kubelet{Version: "v1.27", State: Running}, false},
		{Kubelet{Version: "v1.27.6", State: "paused"}, false},
	} {
		if err := tc.k.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.k, err, tc.ok)
		}
	}
}

func TestReadWrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run", "kubelet.json")
	in := Kubelet{Version: "v1.28.3", State: Running, RestartedAt: "2026-01-01T00:00:00Z"}
	if err := Write(p, in); err != nil {
		t.Fatal(err)
	}
	out, err := Read(p)
	if err != nil || out != in {
		t.Fatalf("Read = %+v, %v; want %+v", out, err, in)
	}
	if err := os.WriteFile(p, []byte(`{"version":"v1.28.3","state":"sleeping"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(p); err == nil {
		t.Error("Read of a bad state: no error")
	}
	if err := Write(p, Kubelet{Version: "x", State: Running}); err == nil {
		t.Error("Write of a bad version: no error")
	}
}
