# The database connection budget. Every connection the deployment can hold at once must fit
# in Cloud SQL's max_connections minus a reserve (superuser slots, Cloud SQL's own agents, an
# operator's psql), or the instance refuses connections under load. This module has no
# provider and creates nothing: `terraform plan` fails on its preconditions, and
# tests/test_terraform.py runs the real terraform binary against it.
#
# A process of the service or of a function opens two pools (services/runtime.py): the user
# pool of DB_POOL_SIZE connections and the jobs pool of max(2, DB_POOL_SIZE / 4); a job
# (migrations, admin) opens one pool of its DB_POOL_SIZE.

terraform {
  required_version = ">= 1.6.0"
}

variable "max_connections" {
  description = "Cloud SQL max_connections flag."
  type        = number
}

variable "reserve" {
  description = "Connections kept free for superuser slots, Cloud SQL's agents and operators."
  type        = number
}

variable "service" {
  description = "Cloud Run service: instances that can run at once, gunicorn processes and threads per instance, DB_POOL_SIZE, request concurrency."
  type = object({
    instances   = number
    processes   = number
    threads     = number
    pool_size   = number
    concurrency = number
  })
}

variable "functions" {
  description = "Cloud Functions: how many, max instances of each, DB_POOL_SIZE (one process per instance)."
  type = object({
    count         = number
    max_instances = number
    pool_size     = number
  })
}

variable "jobs" {
  description = "Cloud Run jobs that may run at the same time as everything else, and their DB_POOL_SIZE."
  type = object({
    count     = number
    pool_size = number
  })
}

locals {
  per_service_process  = var.service.pool_size + max(2, floor(var.service.pool_size / 4))
  per_function_process = var.functions.pool_size + max(2, floor(var.functions.pool_size / 4))

  service   = var.service.instances * var.service.processes * local.per_service_process
  functions = var.functions.count * var.functions.max_instances * local.per_function_process
  jobs      = var.jobs.count * var.jobs.pool_size
  available = var.max_connections - var.reserve
}

output "connections" {
  description = "Connections each part can open at most, and what Cloud SQL leaves for them."
  value = {
    service   = local.service
    functions = local.functions
    jobs      = local.jobs
    total     = local.service + local.functions + local.jobs
    available = local.available
  }

  precondition {
    condition     = local.service + local.functions + local.jobs <= local.available
    error_message = "Database connection budget exceeded: the service can open ${local.service} (${var.service.instances} instances x ${var.service.processes} processes x ${local.per_service_process} for DB_POOL_SIZE ${var.service.pool_size}), the functions ${local.functions} and the jobs ${local.jobs}, ${local.service + local.functions + local.jobs} in all, but max_connections ${var.max_connections} minus a reserve of ${var.reserve} leaves ${local.available}. Lower max_instances, processes or db_pool_size, or raise db_max_connections (with a db_tier that has the memory for it)."
  }

  precondition {
    condition     = var.service.processes * var.service.threads >= var.service.concurrency
    error_message = "Cloud Run sends up to ${var.service.concurrency} requests at once to an instance, but ${var.service.processes} processes x ${var.service.threads} threads can serve only ${var.service.processes * var.service.threads}: every open stream holds a thread. Raise threads or lower concurrency."
  }
}
