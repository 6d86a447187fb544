# Velero (seed section 6, method 3): back up a namespace through the Velero
# server installed in the cluster (velero backup create --include-namespaces),
# schedule the same backup daily (velero schedule create --schedule="0 0 * * *"),
# and prove the backup restores by restoring it beside the original, into a
# drill namespace (velero restore create --from-backup --namespace-mappings).
# runbook creates Velero's objects and watches their status; Velero does the
# work. What this does not cover: docs/velero.md.
runbook "velero-backup" {
  description = "Velero backup of a namespace, a daily schedule, and a restore drill into another namespace"
}

variable "namespace" {
  type        = string
  default     = "app"
  description = "The namespace to back up."
}

variable "drill_namespace" {
  type        = string
  default     = "app-drill"
  description = "Where the restore drill puts the copy of the namespace."
  validation {
    condition     = var.drill_namespace != ""
    error_message = "drill_namespace must name a namespace: the drill never restores over the original."
  }
}

variable "drill" {
  type        = bool
  default     = true
  description = "Restore the backup into drill_namespace once it is Completed."
}

variable "backup_name" {
  type        = string
  default     = ""
  description = "The backup's name; empty: backup-<run id>, the same on a resume of the run."
}

variable "schedule" {
  type        = string
  default     = "0 0 * * *"
  description = "When Velero backs the namespace up (cron); the seed's daily backup at midnight."
}

variable "ttl" {
  type        = string
  default     = "720h"
  description = "How long Velero keeps each backup: 30 days, the seed's layer 3."
}

variable "storage_location" {
  type        = string
  default     = ""
  description = "A BackupStorageLocation; empty: the one marked default."
}

variable "velero_namespace" {
  type    = string
  default = "velero"
}

variable "kubeconfig" {
  type    = string
  default = ""
}

cluster {
  kubeconfig = var.kubeconfig
}

step "velero_backup" "backup" {
  name               = var.backup_name != "" ? var.backup_name : null
  namespace          = var.velero_namespace
  include_namespaces = [var.namespace]
  ttl                = var.ttl
  storage_location   = var.storage_location != "" ? var.storage_location : null
  timeout            = "30m"
}

step "velero_schedule" "daily" {
  name               = "daily-${var.namespace}"
  namespace          = var.velero_namespace
  schedule           = var.schedule
  include_namespaces = [var.namespace]
  ttl                = var.ttl
  storage_location   = var.storage_location != "" ? var.storage_location : null
  timeout            = "5m"
}

step "velero_restore" "drill" {
  when                     = var.drill
  namespace                = var.velero_namespace
  from_backup              = step.backup.name
  include_namespaces       = [var.namespace]
  namespace_mappings       = { (var.namespace) = var.drill_namespace }
  existing_resource_policy = "none"
  timeout                  = "30m"
  comment                  = "a restore drill beside the original: ${var.namespace} into ${var.drill_namespace}"
}
