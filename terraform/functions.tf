# Cloud Functions (gen2), deployed from a zip of this repository (the same source tree as the
# service: entry points in main.py). Terraform uploads the first version; cloudbuild.yaml
# uploads a zip per commit to the same bucket and redeploys, so the source is left to it.

resource "google_storage_bucket" "functions_source" {
  # checkov:skip=CKV_GCP_62:build inputs only, rebuilt from git on every deploy; access logs add cost without audit value
  name                        = "${var.project_id}-${local.name}-fn-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

data "archive_file" "functions_source" {
  type        = "zip"
  source_dir  = "${path.module}/.."
  output_path = "${path.module}/.terraform/functions-source.zip"
  excludes = [
    ".git", ".venv", ".venv-iac", ".data", ".pytest_cache", ".ruff_cache", "__pycache__",
    "terraform", "tests", "bench", "docs", "tools", "mk", ".terraform",
  ]
}

resource "google_storage_bucket_object" "functions_source" {
  name   = "functions-${data.archive_file.functions_source.output_md5}.zip"
  bucket = google_storage_bucket.functions_source.name
  source = data.archive_file.functions_source.output_path
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  name        = each.key
  location    = var.region
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime         = "python312"
    entry_point     = each.value.entry_point
    service_account = google_service_account.functions_build.id
    source {
      storage_source {
        bucket = google_storage_bucket.functions_source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.functions[each.key].email
    available_memory                 = each.value.memory
    available_cpu                    = "1"
    timeout_seconds                  = each.value.timeout
    min_instance_count               = 0
    max_instance_count               = var.function_max_instances
    max_instance_request_concurrency = 1
    # Pub/Sub push and Cloud Scheduler count as internal traffic.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    vpc_connector                  = google_vpc_access_connector.functions.id
    vpc_connector_egress_settings  = "PRIVATE_RANGES_ONLY"
    environment_variables          = local.env[each.key].plain

    dynamic "secret_environment_variables" {
      for_each = local.env[each.key].secret
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }

    dynamic "secret_volumes" {
      for_each = each.value.redis ? [google_secret_manager_secret.redis_ca.secret_id] : []
      content {
        mount_path = local.redis_ca_dir
        project_id = var.project_id
        secret     = secret_volumes.value
        versions {
          path    = local.redis_ca_file
          version = "latest"
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [build_config[0].source, build_config[0].docker_repository]
  }

  depends_on = [
    google_project_iam_member.roles,
    google_secret_manager_secret_iam_member.readers,
    google_secret_manager_secret_version.redis_url,
    google_secret_manager_secret_version.redis_ca,
    google_storage_bucket_iam_member.functions_source_build,
  ]
}

resource "google_storage_bucket_iam_member" "functions_source_build" {
  bucket = google_storage_bucket.functions_source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.functions_build.member
}

resource "google_storage_bucket_iam_member" "functions_source_deployer" {
  bucket = google_storage_bucket.functions_source.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.deployer.member
}

# Who may call which function (a gen2 function is a Cloud Run service of the same name).
locals {
  function_invokers = {
    "embed-memories:push"       = { fn = "embed-memories", member = google_service_account.pubsub_push.member }
    "embed-memories:scheduler"  = { fn = "embed-memories", member = google_service_account.scheduler.member }
    "apply-retention:scheduler" = { fn = "apply-retention", member = google_service_account.scheduler.member }
  }
}

resource "google_cloud_run_v2_service_iam_member" "function_invokers" {
  for_each = local.function_invokers

  name     = google_cloudfunctions2_function.fn[each.value.fn].name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value.member
}
