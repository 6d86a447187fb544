# etcd snapshot backup (seed section 7): save on the first control-plane
# node with kubeadm's certificates, verify, publish atomically with a
# checksum, keep seven days. Schedule it with cron or a CronJob (docs/scheduling.md).
#
# Two ways to take the same snapshot (docs/etcd.md):
#   - this plan, over SSH: etcdctl/etcdutl run on the node, as the seed's
#     script does; the snapshot lands on the node (copy_to brings a checked
#     copy here). Needs kubectl-style access and SSH to the control plane.
#   - etcd-backup-direct.hcl: etcd's client API from the machine running
#     runbook (a control-plane node, or a CronJob pinned to one); no SSH.
runbook "etcd-backup" {
  description = "etcd snapshot with verification and 7-day retention"
}

variable "backup_dir" {
  type        = string
  default     = "/backup/etcd"
  description = "Snapshot directory on the control-plane node."
  validation {
    condition     = startswith(var.backup_dir, "/")
    error_message = "backup_dir must be an absolute path."
  }
}

variable "max_age" {
  type    = string
  default = "168h"
}

variable "copy_to" {
  type        = string
  default     = ""
  description = "Also copy each snapshot to this directory on the machine running runbook."
}

variable "kubeconfig" {
  type    = string
  default = ""
}

variable "ssh_config" {
  type    = string
  default = ""
}

variable "known_hosts" {
  type    = string
  default = "~/.ssh/known_hosts"
}

variable "ssh_user" {
  type    = string
  default = "root"
}

variable "node_address" {
  type    = string
  default = "InternalIP"
}

cluster {
  kubeconfig = var.kubeconfig
}

ssh {
  user        = var.ssh_user
  ssh_config  = var.ssh_config
  known_hosts = var.known_hosts
}

inventory "control_plane" {
  selector = "node-role.kubernetes.io/control-plane"
  address  = var.node_address
}

phase "snapshot" {
  nodes = slice(inventory.control_plane, 0, 1)

  step "etcd_snapshot" "save" {
    dir     = var.backup_dir
    max_age = var.max_age
    copy_to = var.copy_to
  }
  step "exec" "status" {
    command   = ["etcdutl", "snapshot", "status", step.save.path, "--write-out=table"]
    read_only = true
  }
}
