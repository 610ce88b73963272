# Cloud SQL for PostgreSQL 17 (Enterprise edition): private IP only, IAM database
# authentication, backups with point-in-time recovery, maintenance window, Query Insights.

resource "google_sql_database_instance" "main" {
  # checkov:skip=CKV_GCP_79:PostgreSQL 17 on purpose (same major as the embedded test database, pgvector 0.8)
  # checkov:skip=CKV2_GCP_13:log_duration logs one line per statement; Query Insights records statement latency instead
  name                = "${local.name}-pg"
  region              = var.region
  database_version    = "POSTGRES_17"
  deletion_protection = var.db_deletion_protection
  encryption_key_name = var.kms_key_name != "" ? var.kms_key_name : null

  settings {
    # PostgreSQL 16+ defaults to Enterprise Plus, which has no db-custom tiers.
    edition                     = "ENTERPRISE"
    tier                        = var.db_tier
    availability_type           = local.is_dev ? "ZONAL" : "REGIONAL"
    disk_type                   = "PD_SSD"
    disk_size                   = var.db_disk_size_gb
    disk_autoresize             = true
    disk_autoresize_limit       = var.db_disk_autoresize_limit_gb
    deletion_protection_enabled = var.db_deletion_protection
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = google_compute_network.vpc.id
      enable_private_path_for_google_cloud_services = true
      # The Cloud SQL Python connector presents ephemeral client certificates (mTLS).
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.db_pitr_log_days

      backup_retention_settings {
        retained_backups = var.db_backup_retention_count
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = var.maintenance_window.day
      hour         = var.maintenance_window.hour
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      query_string_length     = 1024
      record_application_tags = true
      record_client_address   = false
    }

    # IAM database authentication for the service and function identities.
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    # Explicit, so capacity.tf checks the connection budget against the real limit.
    database_flags {
      name  = "max_connections"
      value = tostring(var.db_max_connections)
    }
    # pgvector: index builds want maintenance memory, exact per-user scans some work_mem (kB).
    database_flags {
      name  = "maintenance_work_mem"
      value = local.is_dev ? "262144" : "1048576"
    }
    database_flags {
      name  = "work_mem"
      value = "16384"
    }
    database_flags {
      name  = "max_parallel_maintenance_workers"
      value = "2"
    }
    # Logging and auditing recommended by the CIS benchmark (checked by checkov).
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "app" {
  name     = var.db_name
  instance = google_sql_database_instance.main.name
}

# Built-in user that owns the schema and runs migrations (Cloud Run job "<name>-migrate").
resource "random_password" "migrator" {
  length  = 32
  special = false
}

resource "google_sql_user" "migrator" {
  name     = "migrator"
  instance = google_sql_database_instance.main.name
  password = random_password.migrator.result
}

# IAM users: the service and each function log in with their service account.
resource "google_sql_user" "iam" {
  for_each = local.db_iam_user

  name     = each.value
  instance = google_sql_database_instance.main.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}
