# The database connection budget (modules/db_connections): `terraform plan` fails when the
# service, the functions and the jobs together could open more connections than Cloud SQL's
# max_connections minus a reserve. docs/DEPLOY.md "Capacity plan" sizes the inputs for 1k,
# 100k and 1M users.

module "db_connections" {
  source = "./modules/db_connections"

  max_connections = var.db_max_connections
  reserve         = var.db_connection_reserve

  service = {
    # During a deploy the smoke-tested tagged revision runs beside the serving one.
    instances   = var.max_instances + max(var.min_instances, 1)
    processes   = var.processes
    threads     = var.threads
    pool_size   = var.db_pool_size
    concurrency = var.concurrency
  }

  functions = {
    count         = length(local.functions)
    max_instances = var.function_max_instances
    pool_size     = local.job_pool_size
  }

  # The migration job and the admin job.
  jobs = {
    count     = 2
    pool_size = local.job_pool_size
  }
}
