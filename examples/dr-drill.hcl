# A disaster-recovery drill: back up the resources, write a canary, snapshot
# etcd, break something (delete a namespace), restore from the snapshot, and
# check that the canary, the namespace and its objects are back and its
# workloads Ready. Run it with `runbook drill` against a lab or a cluster
# that is not production: it deletes a namespace on purpose.
#
#   runbook drill --auto-approve -var-file .lab/runbook.tfvars examples/dr-drill.hcl
#
# The report (report.html, .md, .json) gives the time to recovery (from the
# restore's start to every expectation holding) and the snapshot's age.
runbook "dr-drill" {
  description = "etcd snapshot, damage, restore, verify"
}

variable "victim_namespace" {
  type        = string
  default     = "app"
  description = "The namespace the drill deletes after the snapshot and expects back after the restore."
}

variable "victim_workloads" {
  type        = list(string)
  default     = ["app/deployment/web", "app/deployment/cache", "app/daemonset/log-agent"]
  description = "Workloads (namespace/kind/name) that must be Ready again after the restore."
}

variable "backup_dir" {
  type    = string
  default = "/backup/etcd-drill"
}

variable "admin_kubeconfig" {
  type        = string
  default     = "/etc/kubernetes/admin.conf"
  description = "kubectl's kubeconfig on the control-plane node."
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

locals {
  canary    = "/runbook/drill/canary"
  resources = "drill/resources-${formatdate("YYYYMMDDhhmmss", timestamp())}"
  etcd_tls = [
    "--endpoints=https://127.0.0.1:2379",
    "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
    "--cert=/etc/kubernetes/pki/etcd/server.crt",
    "--key=/etc/kubernetes/pki/etcd/server.key",
  ]
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

drill {
  # This plan deletes a namespace: runbook drill refuses it unless this is true.
  non_production = true
  expect_objects {
    backup     = local.resources
    namespaces = [var.victim_namespace]
  }
  expect_ready = var.victim_workloads
  timeout      = "5m"
}

# What the namespace held before the drill, to compare with after it.
step "backup_resources" "before" {
  dir            = local.resources
  namespaces     = [var.victim_namespace]
  cluster_scoped = false
}

phase "drill" {
  nodes = slice(inventory.control_plane, 0, 1)

  step "exec" "canary" {
    command = concat(["etcdctl", "put", local.canary, timestamp()], local.etcd_tls)
  }
  step "etcd_snapshot" "snapshot" {
    dir = var.backup_dir
  }
  step "exec" "damage" {
    command = ["kubectl", "--kubeconfig", var.admin_kubeconfig, "delete", "namespace", var.victim_namespace, "--wait=true", "--timeout=2m"]
    confirm = true
  }
  step "etcd_restore" "restore" {
    snapshot   = step.snapshot.path
    data_dir   = "/var/lib/etcd-drill-${formatdate("YYYYMMDDhhmmss", timestamp())}"
    canary_key = local.canary
    timeout    = "10m"
  }
  step "wait_node" "ready" {
    timeout = "5m"
  }
  step "exec" "namespace-back" {
    command   = ["kubectl", "--kubeconfig", var.admin_kubeconfig, "get", "namespace", var.victim_namespace]
    read_only = true
  }
}

step "wait_workloads" "recovered" {
  namespaces = [var.victim_namespace]
  timeout    = "5m"
}
