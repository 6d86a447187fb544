# OS maintenance of nodes, one at a time (seed section 1): drain safely,
# do the OS work, bring the node back, uncordon, and wait until what the
# drain moved is healthy before the next node.
runbook "node-maintenance" {
  description = "Drain, OS work, uncordon: one node at a time"
}

variable "nodes" {
  type        = list(string)
  description = "Names of the nodes to maintain, in order."
}

variable "os_command" {
  type        = list(string)
  default     = ["apt-get", "-y", "upgrade"]
  description = "The OS work to run on each node, as an argument list."
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

inventory "all" {
  selector = ""
  address  = var.node_address
}

phase "maintenance" {
  nodes = [for n in inventory.all : n if contains(var.nodes, n.name)]
  rolling {
    batch = 1
  }

  step "drain" "drain" {
    ignore_daemonsets    = true
    delete_emptydir_data = true
    timeout              = "5m"
  }
  step "exec" "os-work" {
    command = var.os_command
    timeout = "30m"
  }
  step "systemctl" "restart-kubelet" {
    action = "restart"
    units  = ["kubelet"]
  }
  step "wait_node" "ready" {
    timeout = "5m"
  }
  step "uncordon" "uncordon" {}
  step "wait_workloads" "healed" {
    pdb_healthy = step.drain.pdb_healthy
    timeout     = "5m"
  }
}
