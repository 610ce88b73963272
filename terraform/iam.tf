# Dedicated service accounts, one per workload; no default compute or App Engine account is
# used anywhere. Roles are granted on the resource where the API allows it (secrets, bucket,
# topic, services); only the roles below have no narrower scope.

resource "google_service_account" "run" {
  account_id   = "${local.name}-run"
  display_name = "Cloud Run service ${local.name}"
  description  = "Identity of the ${local.name} Cloud Run service."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "migrate" {
  account_id   = "${local.name}-migrate"
  display_name = "Migration job of ${local.name}"
  description  = "Runs SQL migrations as the built-in database owner."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "functions" {
  for_each = local.functions

  account_id   = substr("fn-${each.key}", 0, 30)
  display_name = "Cloud Function ${each.key}"
  description  = "Identity of the ${each.key} function (entry point ${each.value.entry_point})."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "functions_build" {
  account_id   = "${local.name}-fn-build"
  display_name = "Cloud Functions builder"
  description  = "Builds the Cloud Functions' containers (instead of the default compute account)."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "scheduler" {
  account_id   = "${local.name}-scheduler"
  display_name = "Cloud Scheduler invoker"
  description  = "Signs the OIDC tokens Cloud Scheduler sends to the functions."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "pubsub_push" {
  account_id   = "${local.name}-push"
  display_name = "Pub/Sub push to embed-memories"
  description  = "Signs the OIDC tokens of the ${local.topic_name} push subscription."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "deployer" {
  account_id   = "${local.name}-deployer"
  display_name = "Cloud Build deployer"
  description  = "Runs cloudbuild.yaml: push images, run migrations, deploy the service and functions."

  depends_on = [google_project_service.apis]
}

locals {
  project_roles = merge(
    {
      run_sql_client      = { member = google_service_account.run.member, role = "roles/cloudsql.client" }
      run_sql_user        = { member = google_service_account.run.member, role = "roles/cloudsql.instanceUser" }
      run_log_writer      = { member = google_service_account.run.member, role = "roles/logging.logWriter" }
      run_metric_writer   = { member = google_service_account.run.member, role = "roles/monitoring.metricWriter" }
      run_trace_agent     = { member = google_service_account.run.member, role = "roles/cloudtrace.agent" }
      migrate_sql_client  = { member = google_service_account.migrate.member, role = "roles/cloudsql.client" }
      migrate_log_writer  = { member = google_service_account.migrate.member, role = "roles/logging.logWriter" }
      build_log_writer    = { member = google_service_account.functions_build.member, role = "roles/logging.logWriter" }
      build_ar_writer     = { member = google_service_account.functions_build.member, role = "roles/artifactregistry.writer" }
      deployer_run_dev    = { member = google_service_account.deployer.member, role = "roles/run.developer" }
      deployer_fn_dev     = { member = google_service_account.deployer.member, role = "roles/cloudfunctions.developer" }
      deployer_log_writer = { member = google_service_account.deployer.member, role = "roles/logging.logWriter" }
    },
    merge([
      for fn in keys(local.functions) : {
        "${fn}_sql_client" = { member = google_service_account.functions[fn].member, role = "roles/cloudsql.client" }
        "${fn}_sql_user"   = { member = google_service_account.functions[fn].member, role = "roles/cloudsql.instanceUser" }
        "${fn}_log_writer" = { member = google_service_account.functions[fn].member, role = "roles/logging.logWriter" }
      }
    ]...),
  )
}

resource "google_project_iam_member" "roles" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

# The deployer acts as the runtime identities when it deploys revisions and functions.
resource "google_service_account_iam_member" "deployer_act_as" {
  for_each = merge(
    {
      run      = google_service_account.run.name
      migrate  = google_service_account.migrate.name
      fn_build = google_service_account.functions_build.name
    },
    { for fn, sa in google_service_account.functions : "fn_${fn}" => sa.name },
  )

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer.member
}

# Cloud Scheduler's and Pub/Sub's service agents mint OIDC tokens for their accounts.
resource "google_service_account_iam_member" "scheduler_agent_token_creator" {
  service_account_id = google_service_account.scheduler.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"
}

resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
