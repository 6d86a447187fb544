# etcd snapshot backup (seed section 7), direct mode: the snapshot
# etcd-backup.hcl takes over SSH, taken instead from the machine running
# runbook with etcd's v3 client: no SSH, no etcdctl/etcdutl on a node. It is
# streamed to a temporary file, verified (etcd's appended SHA-256, then
# etcdutl's snapshot status: hash, revision, keys, size), published
# atomically with a .sha256, and old snapshots are deleted after seven days
# (the seed's `find -mtime +7 -delete`).
#
# Every path is on the machine running runbook: run it on a control-plane
# node from cron or a systemd timer, or in a Kubernetes CronJob pinned to
# one with the etcd certificates mounted (docs/scheduling.md, docs/etcd.md).
# The seed's ETCDCTL_ENDPOINTS/CACERT/CERT/KEY are the etcd_* variables.
runbook "etcd-backup-direct" {
  description = "etcd snapshot through etcd's client API, verified, with 7-day retention"
}

variable "backup_dir" {
  type        = string
  default     = "/backup/etcd"
  description = "Snapshot directory on the machine running runbook."
  validation {
    condition     = startswith(var.backup_dir, "/")
    error_message = "backup_dir must be an absolute path."
  }
}

variable "max_age" {
  type        = string
  default     = "168h"
  description = "Delete etcd-snapshot-*.db in backup_dir older than this."
}

variable "keep" {
  type        = number
  default     = 0
  description = "Also keep at most this many snapshots (0: no limit by count)."
}

variable "etcd_endpoint" {
  type        = string
  default     = "https://127.0.0.1:2379"
  description = "One etcd member's client URL (ETCDCTL_ENDPOINTS)."
}

variable "etcd_cacert" {
  type    = string
  default = "/etc/kubernetes/pki/etcd/ca.crt"
}

variable "etcd_cert" {
  type    = string
  default = "/etc/kubernetes/pki/etcd/server.crt"
}

variable "etcd_key" {
  type    = string
  default = "/etc/kubernetes/pki/etcd/server.key"
}

variable "timeout" {
  type        = string
  default     = "10m"
  description = "Bound of the whole snapshot: connect, stream, verify, publish, retention."
}

# The cluster is only used for runbook's lock (a Lease in kube-system), so
# that two backups never overlap; on a control-plane node use
# /etc/kubernetes/admin.conf, in a CronJob leave it empty (in-cluster).
variable "kubeconfig" {
  type    = string
  default = ""
}

cluster {
  kubeconfig = var.kubeconfig
}

step "etcd_snapshot_direct" "save" {
  dir       = var.backup_dir
  keep      = var.keep
  max_age   = var.max_age
  endpoints = var.etcd_endpoint
  cacert    = var.etcd_cacert
  cert      = var.etcd_cert
  key       = var.etcd_key
  timeout   = var.timeout
}
