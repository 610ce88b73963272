# API keys: the secrets only. Their values are never in Terraform; add them with
#   printf %s "$KEY" | gcloud secrets versions add openai-api-key --data-file=-
locals {
  api_secrets = toset(["anthropic-api-key", "openai-api-key"])

  # Who may read which secret (least privilege: only the workloads that use it).
  secret_readers = merge(
    {
      for pair in setproduct(["anthropic-api-key", "openai-api-key"], ["run", "migrate", "embed-memories", "apply-retention"]) :
      "${pair[0]}:${pair[1]}" => { secret = google_secret_manager_secret.api[pair[0]].id, sa = pair[1] }
    },
    {
      "redis-url:run"                = { secret = google_secret_manager_secret.redis_url.id, sa = "run" }
      "redis-url:apply-retention"    = { secret = google_secret_manager_secret.redis_url.id, sa = "apply-retention" }
      "redis-ca:run"                 = { secret = google_secret_manager_secret.redis_ca.id, sa = "run" }
      "redis-ca:apply-retention"     = { secret = google_secret_manager_secret.redis_ca.id, sa = "apply-retention" }
      "db-migrator-password:migrate" = { secret = google_secret_manager_secret.db_migrator_password.id, sa = "migrate" }
    },
  )

  workload_sa = {
    run             = google_service_account.run.member
    migrate         = google_service_account.migrate.member
    embed-memories  = google_service_account.functions["embed-memories"].member
    apply-retention = google_service_account.functions["apply-retention"].member
  }
}

resource "google_secret_manager_secret" "api" {
  for_each = local.api_secrets

  secret_id = each.key
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# Values Terraform itself knows (they are in its state anyway): the Redis URL with the AUTH
# string, the Redis server CA, the migrator's password.
resource "google_secret_manager_secret" "redis_url" {
  secret_id = "${local.name}-redis-url"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "redis_url" {
  secret      = google_secret_manager_secret.redis_url.id
  secret_data = local.redis_url
}

resource "google_secret_manager_secret" "redis_ca" {
  secret_id = "${local.name}-redis-ca"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "redis_ca" {
  secret      = google_secret_manager_secret.redis_ca.id
  secret_data = join("\n", [for c in google_redis_instance.cache.server_ca_certs : c.cert])
}

resource "google_secret_manager_secret" "db_migrator_password" {
  secret_id = "${local.name}-db-migrator-password"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "db_migrator_password" {
  secret      = google_secret_manager_secret.db_migrator_password.id
  secret_data = random_password.migrator.result
}

resource "google_secret_manager_secret_iam_member" "readers" {
  for_each = local.secret_readers

  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = local.workload_sa[each.value.sa]
}
