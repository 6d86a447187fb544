# etcd restore (seed section 7), made safe (field case F07): the snapshot is
# verified before anything stops; the restore goes into a fresh absolute data
# dir; the old one is kept; the etcd manifest is switched; the result is
# verified before the apiserver comes back.
runbook "etcd-restore" {
  description = "Restore etcd from a verified snapshot on the first control-plane node"
}

variable "snapshot" {
  type        = string
  description = "Absolute path of the snapshot on the control-plane node."
}

variable "data_dir" {
  type        = string
  default     = "/var/lib/etcd-restored"
  description = "A new, absolute data directory for the restored etcd."
}

variable "canary_key" {
  type        = string
  default     = ""
  description = "An etcd key written before the snapshot that must be there after the restore."
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

phase "restore" {
  nodes = slice(inventory.control_plane, 0, 1)

  step "etcd_restore" "restore" {
    snapshot   = var.snapshot
    data_dir   = var.data_dir
    canary_key = var.canary_key == "" ? null : var.canary_key
    timeout    = "10m"
  }
  step "wait_node" "ready" {
    timeout = "5m"
  }
}

# The seed's last check (kubectl get nodes, get pods -A), as a gate.
step "wait_workloads" "healthy" {
  timeout = "5m"
}
