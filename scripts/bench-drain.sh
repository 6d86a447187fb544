#!/usr/bin/env bash
# Drain benchmark (issue 3): a node running 30 pods on the lab, drained by
# runbook and, on an identical node, by kubectl drain with the same options.
# Prints both wall times, and how long runbook's drain took to return after
# its last pod was gone (from its JSON events).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/runbook-bench-drain.XXXXXX)
trap 'bin/runbook-lab down --dir "$dir/lab" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
bin/runbook-lab up --dir "$dir/lab" --workers 3 >/dev/null
export KUBECONFIG=$dir/lab/kubeconfig
for n in worker-1 worker-2; do
  kubectl create deployment "load-$n" --image=nginx:1.25 --replicas=30 -o yaml --dry-run=client |
    sed "s/    spec:/    spec:\n      nodeSelector: {kubernetes.io\/hostname: $n}/" | kubectl apply -f - >/dev/null
done
kubectl rollout status deployment/load-worker-1 --timeout=120s >/dev/null
kubectl rollout status deployment/load-worker-2 --timeout=120s >/dev/null
# The replacements need somewhere to go.
kubectl patch deployment load-worker-1 --type=json -p '[{"op":"remove","path":"/spec/template/spec/nodeSelector"}]' >/dev/null 2>&1 || true
cat > "$dir/drain.hcl" <<'HCL'
runbook "bench-drain" {}
variable "node" { type = string }
step "drain" "drain" {
  node                 = var.node
  ignore_daemonsets    = true
  delete_emptydir_data = true
  timeout              = "5m"
}
HCL
t0=$(date +%s.%N)
bin/runbook apply --auto-approve --no-lock -o json -var node=worker-1 --journal-dir "$dir/j" "$dir/drain.hcl" > "$dir/events.json"
t1=$(date +%s.%N)
kubectl drain worker-2 --ignore-daemonsets --delete-emptydir-data --timeout=5m >/dev/null
t2=$(date +%s.%N)
python3 - "$dir/events.json" "$t0" "$t1" "$t2" <<'PY'
import json, sys
from datetime import datetime
evs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{") and '"type"' in l]
def ts(e): return datetime.fromisoformat(e["time"].replace("Z", "+00:00")[:26] + "+00:00" if "." in e["time"] else e["time"].replace("Z", "+00:00")).timestamp()
gone = [ts(e) for e in evs if e["type"] == "pod_gone"]
done = [ts(e) for e in evs if e["type"] == "step_finished"]
t0, t1, t2 = map(float, sys.argv[2:5])
print(f"pods evicted by runbook: {len(gone)}")
print(f"runbook apply (drain of worker-1, process start to exit): {t1 - t0:.2f} s")
print(f"kubectl drain (worker-2, same options):                 {t2 - t1:.2f} s")
if gone and done:
    print(f"runbook's drain returned {1000 * (max(done) - max(gone)):.0f} ms after its last pod was gone")
PY
