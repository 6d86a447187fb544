# Upgrade a kubeadm cluster by one minor release, as the seed procedure
# does by hand: the first control-plane node with `kubeadm upgrade apply`,
# the other control-plane nodes with `kubeadm upgrade node`, then the
# workers one at a time. Every node is drained first and uncordoned last.
runbook "upgrade-1.28" {
  description = "kubeadm minor upgrade: control plane first, then workers one at a time"
}

variable "target_version" {
  type        = string
  default     = "1.28.0"
  description = "The Kubernetes version to upgrade to (upstream, without a package revision)."
  validation {
    condition     = can(semver(var.target_version))
    error_message = "target_version must be a version such as \"1.28.0\"."
  }
}

variable "kubeconfig" {
  type        = string
  default     = ""
  description = "Kubeconfig of the cluster; empty: as kubectl (KUBECONFIG, ~/.kube/config)."
}

variable "ssh_config" {
  type        = string
  default     = ""
  description = "An ssh_config file with a Host entry per node (optional)."
}

variable "known_hosts" {
  type        = string
  default     = "~/.ssh/known_hosts"
  description = "known_hosts file with every node's host key."
}

variable "ssh_user" {
  type    = string
  default = "root"
}

variable "node_address" {
  type        = string
  default     = "InternalIP"
  description = "How to reach nodes: InternalIP, ExternalIP, Hostname, or name (an ssh_config Host alias)."
}

locals {
  minor = minor(var.target_version)
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

inventory "workers" {
  selector = "!node-role.kubernetes.io/control-plane"
  address  = var.node_address
}

# Refuses, before anything changes, a target that skips a minor, kubelets too
# far behind it, and steps that would upgrade a kubelet before the control plane.
step "version_check" "preflight" {
  target_version = var.target_version
}

phase "first-control-plane" {
  nodes = slice(inventory.control_plane, 0, 1)

  step "apt_repository" "repository" {
    minor = local.minor
  }
  step "apt" "kubeadm" {
    packages = { kubeadm = var.target_version }
  }
  step "kubeadm" "plan" {
    action  = "upgrade_plan"
    version = var.target_version
  }
  step "kubeadm" "upgrade" {
    action  = "upgrade_apply"
    version = var.target_version
    timeout = "15m"
  }
  step "drain" "drain" {
    ignore_daemonsets = true
    timeout           = "5m"
  }
  step "apt" "kubelet" {
    packages = { kubelet = var.target_version, kubectl = var.target_version }
    update   = false
  }
  step "systemctl" "restart-kubelet" {
    action        = "restart"
    units         = ["kubelet"]
    daemon_reload = true
  }
  step "wait_node" "ready" {
    kubelet_version = var.target_version
    timeout         = "5m"
  }
  step "uncordon" "uncordon" {}
}

phase "other-control-planes" {
  nodes = slice(inventory.control_plane, min(1, length(inventory.control_plane)), length(inventory.control_plane))

  step "apt_repository" "repository" {
    minor = local.minor
  }
  step "apt" "kubeadm" {
    packages = { kubeadm = var.target_version }
  }
  step "kubeadm" "upgrade" {
    action  = "upgrade_node"
    version = var.target_version
    timeout = "15m"
  }
  step "drain" "drain" {
    ignore_daemonsets = true
    timeout           = "5m"
  }
  step "apt" "kubelet" {
    packages = { kubelet = var.target_version, kubectl = var.target_version }
    update   = false
  }
  step "systemctl" "restart-kubelet" {
    action        = "restart"
    units         = ["kubelet"]
    daemon_reload = true
  }
  step "wait_node" "ready" {
    kubelet_version = var.target_version
    timeout         = "5m"
  }
  step "uncordon" "uncordon" {}
}

phase "workers" {
  nodes = inventory.workers
  rolling {
    batch = 1
  }

  step "drain" "drain" {
    ignore_daemonsets    = true
    delete_emptydir_data = true
    timeout              = "5m"
  }
  step "apt_repository" "repository" {
    minor = local.minor
  }
  step "apt" "kubeadm" {
    packages = { kubeadm = var.target_version }
  }
  step "kubeadm" "upgrade" {
    action  = "upgrade_node"
    version = var.target_version
    timeout = "10m"
  }
  step "apt" "kubelet" {
    packages = { kubelet = var.target_version }
    update   = false
  }
  step "systemctl" "restart-kubelet" {
    action        = "restart"
    units         = ["kubelet"]
    daemon_reload = true
  }
  step "wait_node" "ready" {
    kubelet_version = var.target_version
    timeout         = "5m"
  }
  step "uncordon" "uncordon" {}
  # The gate between workers: what the drain disrupted has healed.
  step "wait_workloads" "healed" {
    pdb_healthy = step.drain.pdb_healthy
    timeout     = "5m"
  }
}
