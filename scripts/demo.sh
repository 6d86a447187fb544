#!/usr/bin/env bash
# The main job on the lab: a fresh local cluster at v1.27.6 (1 control
# plane, 2 workers, PDB-guarded workloads), the dry-run of
# examples/upgrade-1.28.hcl, then the upgrade with live progress, ending with
# every node Ready, schedulable and at v1.28.0.
#
# Each run starts a fresh lab in $LAB_DIR (default .lab); `make demo-down`
# stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB_DIR=${LAB_DIR:-.lab}
lab=bin/runbook-lab
runbook=bin/runbook

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A fresh lab in $LAB_DIR"
"$lab" down --dir "$LAB_DIR" --purge >/dev/null 2>&1 || true
"$lab" up --dir "$LAB_DIR"
export KUBECONFIG=$PWD/$LAB_DIR/kubeconfig
vars=$PWD/$LAB_DIR/runbook.tfvars
kubectl get nodes -o wide
kubectl get pdb -A

step "The dry-run (runbook plan)"
"$runbook" plan -var-file "$vars" examples/upgrade-1.28.hcl

step "The upgrade (runbook apply)"
start=$(date +%s)
"$runbook" apply --auto-approve -var-file "$vars" --journal-dir "$LAB_DIR/journal" examples/upgrade-1.28.hcl
end=$(date +%s)

step "After $((end - start)) s"
kubectl get nodes -o wide
kubectl version 2>/dev/null | grep -i server || true
kubectl get pdb -A
run=$(basename "$(ls -t "$LAB_DIR"/journal/*.jsonl | head -1)" .jsonl)
"$runbook" report --out "$LAB_DIR/report.html" "$LAB_DIR/journal/$run.jsonl"
# Where the apply's time went: waiting on the cluster (pod terminations in
# drain, kubelet restarts, the control plane's restart inside kubeadm) per
# step kind, and the time outside every step.
"$runbook" report -o markdown "$LAB_DIR/journal/$run.jsonl" | awk '/^## Where the time went/ {on=1} /^## Steps/ {on=0} on'
echo "Report: $LAB_DIR/report.html. Stop the lab with: make demo-down"
