# ---------------------------------------------------------------------------------------
# Project and naming
# ---------------------------------------------------------------------------------------

variable "project_id" {
  description = "ID of the Google Cloud project everything is created in."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project ID."
  }
}

variable "region" {
  description = "Region for Cloud Run, Cloud SQL, Memorystore, Functions, Scheduler and buckets."
  type        = string
  default     = "us-central1"
}

variable "environment" {
  description = "Deployment shape: \"dev\" (single-zone, small, cheap) or \"prod\" (HA)."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be \"dev\" or \"prod\"."
  }
}

variable "service_name" {
  description = "Name of the Cloud Run service (also the prefix of most other names)."
  type        = string
  default     = "memory-agent"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}[a-z0-9]$", var.service_name))
    error_message = "service_name must be 3-42 lowercase letters, digits or dashes."
  }
}

variable "labels" {
  description = "Extra labels put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------

variable "subnet_cidr" {
  description = "CIDR of the subnet Cloud Run's Direct VPC egress uses (needs room for 2x max instances)."
  type        = string
  default     = "10.10.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be a valid IPv4 CIDR block."
  }
}

variable "connector_cidr" {
  description = "/28 range for the Serverless VPC Access connector the Cloud Functions use."
  type        = string
  default     = "10.8.0.0/28"

  validation {
    condition     = can(cidrhost(var.connector_cidr, 0)) && endswith(var.connector_cidr, "/28")
    error_message = "connector_cidr must be a /28 IPv4 CIDR block."
  }
}

variable "private_services_prefix_length" {
  description = "Prefix length of the range reserved for private services access (Cloud SQL, Memorystore)."
  type        = number
  default     = 20

  validation {
    condition     = var.private_services_prefix_length >= 16 && var.private_services_prefix_length <= 24
    error_message = "private_services_prefix_length must be between 16 and 24."
  }
}

# ---------------------------------------------------------------------------------------
# Cloud Run
# ---------------------------------------------------------------------------------------

variable "image" {
  description = "Container image of the service. Cloud Build deploys new revisions; Terraform only sets the first one. Empty: a placeholder image until the first build."
  type        = string
  default     = ""
}

variable "min_instances" {
  description = "Minimum Cloud Run instances (0 lets the service scale to zero)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instances >= 0
    error_message = "min_instances must be >= 0."
  }
}

variable "max_instances" {
  description = "Maximum Cloud Run instances (also bounds database connections: max_instances x DB_POOL_SIZE)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "concurrency" {
  description = "Concurrent requests per instance. gunicorn's thread count should match (each open SSE stream holds a thread)."
  type        = number
  default     = 32

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000
    error_message = "concurrency must be between 1 and 1000."
  }
}

variable "processes" {
  description = "gunicorn processes per instance (WEB_CONCURRENCY). Each has its own database pools: see the connection budget in capacity.tf."
  type        = number
  default     = 1

  validation {
    condition     = var.processes >= 1 && var.processes <= 16
    error_message = "processes must be between 1 and 16."
  }
}

variable "threads" {
  description = "requests one gunicorn process serves at once (GUNICORN_THREADS: greenlets under the default gevent worker, threads under gthread); processes x threads must be at least concurrency."
  type        = number
  default     = 80

  validation {
    condition     = var.threads >= 1 && var.threads <= 1000
    error_message = "threads must be between 1 and 1000."
  }
}

variable "cpu" {
  description = "vCPUs per Cloud Run instance."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu)
    error_message = "cpu must be one of 1, 2, 4, 6, 8."
  }
}

variable "memory" {
  description = "Memory per Cloud Run instance (e.g. 512Mi, 1Gi, 2Gi)."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must look like 512Mi or 2Gi."
  }
}

variable "request_timeout_seconds" {
  description = "Cloud Run request timeout; long enough for a streamed chat answer."
  type        = number
  default     = 300

  validation {
    condition     = var.request_timeout_seconds >= 10 && var.request_timeout_seconds <= 3600
    error_message = "request_timeout_seconds must be between 10 and 3600."
  }
}

variable "ingress" {
  description = "Cloud Run ingress: INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (with a load balancer in front)."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "public_access" {
  description = "Grant roles/run.invoker to allUsers. The app authenticates every API call itself (API keys, ID tokens); set false to require Google IAM in front of it as well."
  type        = bool
  default     = true
}

variable "firebase_project_id" {
  description = "FIREBASE_PROJECT_ID: accept Firebase / Identity Platform ID tokens issued for this project (usually project_id) besides API keys. Empty: API keys only."
  type        = string
  default     = ""
}

variable "custom_domain" {
  description = "Optional domain (e.g. chat.example.com, verified for the project) mapped to the service with a Cloud Run domain mapping. Empty: the run.app URL only."
  type        = string
  default     = ""

  validation {
    condition     = var.custom_domain == "" || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.custom_domain))
    error_message = "custom_domain must be empty or a lowercase domain name such as chat.example.com."
  }
}

variable "log_level" {
  description = "LOG_LEVEL of the service and functions."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "db_pool_size" {
  description = "DB_POOL_SIZE of each service process (it also opens a jobs pool of max(2, DB_POOL_SIZE / 4))."
  type        = number
  default     = 10

  validation {
    condition     = var.db_pool_size >= 1
    error_message = "db_pool_size must be >= 1."
  }
}

# ---------------------------------------------------------------------------------------
# Embeddings / LLM
# ---------------------------------------------------------------------------------------

variable "embedding_provider" {
  description = "EMBEDDING_PROVIDER: openai (text-embedding-3-small, 1536 dims) in the cloud; local needs requirements-local.txt in the image."
  type        = string
  default     = "openai"

  validation {
    condition     = contains(["openai", "local", "auto"], var.embedding_provider)
    error_message = "embedding_provider must be openai, local or auto."
  }
}

variable "embedding_model" {
  description = "EMBEDDING_MODEL (fixes the vector dimension of the deployment)."
  type        = string
  default     = "text-embedding-3-small"
}

variable "embed_batch_size" {
  description = "EMBED_BATCH_SIZE: memories embedded per provider call by the embedding functions."
  type        = number
  default     = 64
}

variable "llm_providers" {
  description = "LLM_PROVIDERS: providers the router tries, in order (a provider without a key is skipped)."
  type        = string
  default     = "anthropic,openai"

  validation {
    condition     = alltrue([for p in split(",", var.llm_providers) : contains(["anthropic", "openai"], trimspace(p))])
    error_message = "llm_providers must be a comma-separated list of anthropic and openai."
  }
}

variable "embed_in_process" {
  description = "EMBED_IN_PROCESS of the service: also embed in a background thread of each instance (false: the embed-memories function does it)."
  type        = bool
  default     = false
}

variable "hnsw_index" {
  description = "HNSW_INDEX: build the pgvector HNSW index for large namespaces (costs write throughput)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------
# Cloud SQL
# ---------------------------------------------------------------------------------------

variable "db_tier" {
  description = "Cloud SQL machine tier (Enterprise edition), e.g. db-custom-1-3840 (dev) or db-custom-2-8192 (prod)."
  type        = string
  default     = "db-custom-1-3840"

  validation {
    condition     = can(regex("^db-(custom-[0-9]+-[0-9]+|g1-small|f1-micro)$", var.db_tier))
    error_message = "db_tier must be a shared-core or db-custom-CPU-MEMORY tier."
  }
}

variable "db_max_connections" {
  description = "Cloud SQL max_connections flag, set explicitly so the connection budget (capacity.tf) is checked against the real limit. Changing it restarts the instance."
  type        = number
  default     = 200

  validation {
    condition     = var.db_max_connections >= 25 && var.db_max_connections <= 262143
    error_message = "db_max_connections must be between 25 and 262143."
  }
}

variable "db_connection_reserve" {
  description = "Connections the budget keeps free: superuser slots, Cloud SQL's own agents, an operator's session, instances briefly above max_instances."
  type        = number
  default     = 10

  validation {
    condition     = var.db_connection_reserve >= 3
    error_message = "db_connection_reserve must be >= 3 (PostgreSQL's superuser_reserved_connections)."
  }
}

variable "db_disk_size_gb" {
  description = "Initial Cloud SQL SSD size in GB (grows automatically)."
  type        = number
  default     = 20

  validation {
    condition     = var.db_disk_size_gb >= 10
    error_message = "db_disk_size_gb must be at least 10."
  }
}

variable "db_disk_autoresize_limit_gb" {
  description = "Upper bound for automatic disk growth in GB (0 = no limit)."
  type        = number
  default     = 500
}

variable "db_name" {
  description = "Name of the application database."
  type        = string
  default     = "memory_agent"
}

variable "db_backup_retention_count" {
  description = "Automated backups kept."
  type        = number
  default     = 7
}

variable "db_pitr_log_days" {
  description = "Days of transaction logs kept for point-in-time recovery (1-7)."
  type        = number
  default     = 7

  validation {
    condition     = var.db_pitr_log_days >= 1 && var.db_pitr_log_days <= 7
    error_message = "db_pitr_log_days must be between 1 and 7."
  }
}

variable "db_deletion_protection" {
  description = "Protect the Cloud SQL instance against deletion (both Terraform and the API)."
  type        = bool
  default     = true
}

variable "maintenance_window" {
  description = "Weekly maintenance window for Cloud SQL and Memorystore: day 1-7 (Mon-Sun) and hour 0-23 UTC."
  type = object({
    day  = number
    hour = number
  })
  default = {
    day  = 7
    hour = 3
  }

  validation {
    condition     = var.maintenance_window.day >= 1 && var.maintenance_window.day <= 7 && var.maintenance_window.hour >= 0 && var.maintenance_window.hour <= 23
    error_message = "maintenance_window.day must be 1-7 and hour 0-23."
  }
}

# ---------------------------------------------------------------------------------------
# Memorystore
# ---------------------------------------------------------------------------------------

variable "redis_tier" {
  description = "Memorystore tier: BASIC (dev, no replica) or STANDARD_HA (prod, automatic failover)."
  type        = string
  default     = "BASIC"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier must be BASIC or STANDARD_HA."
  }
}

variable "redis_memory_size_gb" {
  description = "Memorystore capacity in GB."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_memory_size_gb >= 1 && var.redis_memory_size_gb <= 300
    error_message = "redis_memory_size_gb must be between 1 and 300."
  }
}

# ---------------------------------------------------------------------------------------
# Background jobs
# ---------------------------------------------------------------------------------------

variable "retention_schedule" {
  description = "Cron schedule (in scheduler_time_zone) of the daily retention run."
  type        = string
  default     = "30 3 * * *"
}

variable "embed_sweep_schedule" {
  description = "Cron schedule of the embedding sweep that picks up memories Pub/Sub missed."
  type        = string
  default     = "*/10 * * * *"
}

variable "scheduler_time_zone" {
  description = "Time zone of the Cloud Scheduler jobs."
  type        = string
  default     = "Etc/UTC"
}

variable "function_max_instances" {
  description = "Maximum instances per Cloud Function."
  type        = number
  default     = 5
}

variable "archive_nearline_after_days" {
  description = "Days after which archived memories move to NEARLINE (then COLDLINE at 3x, ARCHIVE at 12x)."
  type        = number
  default     = 30

  validation {
    condition     = var.archive_nearline_after_days >= 1
    error_message = "archive_nearline_after_days must be >= 1."
  }
}

# ---------------------------------------------------------------------------------------
# Encryption (optional CMEK)
# ---------------------------------------------------------------------------------------

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) for CMEK on Cloud SQL, the archive bucket and Pub/Sub. Empty: Google-managed keys. The service agents need roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = ""

  validation {
    condition     = var.kms_key_name == "" || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be empty or a full Cloud KMS crypto key name."
  }
}

# ---------------------------------------------------------------------------------------
# Monitoring and cost
# ---------------------------------------------------------------------------------------

variable "notification_channels" {
  description = "Existing Cloud Monitoring notification channel IDs (projects/P/notificationChannels/N) that get every alert."
  type        = list(string)
  default     = []
}

variable "alert_email" {
  description = "Optional e-mail address; when set, an e-mail notification channel is created and added to every alert."
  type        = string
  default     = ""
}

variable "alert_5xx_ratio" {
  description = "Alert when the share of 5xx responses over 5 minutes exceeds this ratio."
  type        = number
  default     = 0.05
}

variable "alert_p95_latency_ms" {
  description = "Alert when p95 request latency over 5 minutes exceeds this many milliseconds (streamed chat answers count their full duration)."
  type        = number
  default     = 30000
}

variable "alert_llm_429_per_5m" {
  description = "Alert when LLM providers answer 429 more often than this in 5 minutes."
  type        = number
  default     = 10
}

variable "billing_account" {
  description = "Billing account ID (XXXXXX-XXXXXX-XXXXXX) for the optional budget. Empty: no budget."
  type        = string
  default     = ""
}

variable "monthly_budget_usd" {
  description = "Monthly budget in USD for the project (alerts at 50/90/100% and forecast 100%)."
  type        = number
  default     = 500
}
