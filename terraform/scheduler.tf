# Cloud Scheduler, with OIDC tokens of the scheduler service account:
# * the daily retention run (HTTP POST to apply_retention);
# * the embedding sweep: POSTs a Pub/Sub push body to embed_memories, which functions-framework
#   turns into the same CloudEvent a pushed message gives, marked with attribute kind=sweep;
#   the handler claims whatever is still pending, so nothing Pub/Sub missed stays unembedded.

resource "google_cloud_scheduler_job" "retention" {
  name             = "${local.name}-apply-retention"
  region           = var.region
  description      = "Daily retention run of ${local.name}."
  schedule         = var.retention_schedule
  time_zone        = var.scheduler_time_zone
  attempt_deadline = "600s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fn["apply-retention"].url
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({ trigger = "scheduler" }))

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.function_url["apply-retention"]
    }
  }

  depends_on = [google_service_account_iam_member.scheduler_agent_token_creator]
}

resource "google_cloud_scheduler_job" "embed_sweep" {
  name             = "${local.name}-embed-sweep"
  region           = var.region
  description      = "Embeds memories the ${local.topic_name} push missed."
  schedule         = var.embed_sweep_schedule
  time_zone        = var.scheduler_time_zone
  attempt_deadline = "320s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fn["embed-memories"].url
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({
      subscription = "projects/${var.project_id}/subscriptions/${local.name}-scheduler-sweep"
      message = {
        messageId  = "sweep"
        data       = base64encode(jsonencode({ sweep = true }))
        attributes = { kind = "sweep" }
      }
    }))

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.function_url["embed-memories"]
    }
  }

  depends_on = [google_service_account_iam_member.scheduler_agent_token_creator]
}
