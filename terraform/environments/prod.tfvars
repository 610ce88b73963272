# Prod shape: one warm instance, regional (HA) Cloud SQL, STANDARD_HA Redis, protected data.
#   terraform plan -var-file=environments/prod.tfvars -var="project_id=$PROJECT_ID"
environment = "prod"
region      = "us-central1"

min_instances = 1
max_instances = 20
concurrency   = 32
cpu           = "1"
memory        = "1Gi"
db_pool_size  = 10

db_tier                     = "db-custom-2-8192"
db_max_connections          = 400
db_disk_size_gb             = 50
db_disk_autoresize_limit_gb = 500
db_backup_retention_count   = 14
db_pitr_log_days            = 7
db_deletion_protection      = true

redis_tier           = "STANDARD_HA"
redis_memory_size_gb = 1

function_max_instances = 10
embed_sweep_schedule   = "*/5 * * * *"

alert_5xx_ratio      = 0.02
alert_p95_latency_ms = 20000
monthly_budget_usd   = 1500
