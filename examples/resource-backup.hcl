# Resource backup from the API server (seed section 6, method 2), in a tree
# that diffs well in git: one YAML file per object.
runbook "resource-backup" {
  description = "Every API resource, one YAML file per object"
}

variable "dir" {
  type        = string
  default     = "backup"
  description = "Directory on this machine; a timestamped subdirectory is created in it."
}

variable "namespaces" {
  type        = list(string)
  default     = []
  description = "Only these namespaces; empty: all."
}

variable "include_secrets" {
  type    = bool
  default = false
}

variable "kubeconfig" {
  type    = string
  default = ""
}

cluster {
  kubeconfig = var.kubeconfig
}

step "backup_resources" "backup" {
  dir             = "${var.dir}/${formatdate("YYYYMMDD-hhmmss", timestamp())}"
  namespaces      = length(var.namespaces) > 0 ? var.namespaces : null
  include_secrets = var.include_secrets
}
