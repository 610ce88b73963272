# Dev shape: scale to zero, single-zone Cloud SQL, BASIC Redis, no deletion protection.
#   terraform plan -var-file=environments/dev.tfvars -var="project_id=$PROJECT_ID"
environment = "dev"
region      = "us-central1"

min_instances = 0
max_instances = 3
concurrency   = 32
cpu           = "1"
memory        = "1Gi"
db_pool_size  = 5

db_tier                     = "db-custom-1-3840"
db_max_connections          = 100
db_disk_size_gb             = 10
db_disk_autoresize_limit_gb = 50
db_backup_retention_count   = 3
db_pitr_log_days            = 3
db_deletion_protection      = false

redis_tier           = "BASIC"
redis_memory_size_gb = 1

function_max_instances = 2
embed_sweep_schedule   = "*/15 * * * *"

monthly_budget_usd = 150
