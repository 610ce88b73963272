# Changed memories: the service publishes memory ids to this topic; a push subscription
# delivers them to the embed-memories function (functions-framework turns the push body into
# a CloudEvent), with backoff and a dead-letter topic after repeated failures. Our own
# subscription rather than an Eventarc trigger, because an Eventarc-managed subscription
# cannot be given a dead-letter policy from Terraform.

resource "google_pubsub_topic" "memory_written" {
  name                       = local.topic_name
  kms_key_name               = var.kms_key_name != "" ? var.kms_key_name : null
  message_retention_duration = "86400s"
  labels                     = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "memory_written_dead_letter" {
  name                       = "${local.topic_name}-dead-letter"
  kms_key_name               = var.kms_key_name != "" ? var.kms_key_name : null
  message_retention_duration = "604800s"
  labels                     = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "embed_push" {
  name                       = "${local.topic_name}-embed"
  topic                      = google_pubsub_topic.memory_written.id
  ack_deadline_seconds       = 300
  message_retention_duration = "86400s"
  labels                     = local.labels

  push_config {
    push_endpoint = google_cloudfunctions2_function.fn["embed-memories"].url
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = local.function_url["embed-memories"]
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.memory_written_dead_letter.id
    max_delivery_attempts = 10
  }

  expiration_policy {
    ttl = ""
  }
}

# Dead letters are kept for inspection and replay.
resource "google_pubsub_subscription" "dead_letter_hold" {
  name                       = "${local.topic_name}-dead-letter-hold"
  topic                      = google_pubsub_topic.memory_written_dead_letter.id
  message_retention_duration = "604800s"
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}

# The service publishes; the Pub/Sub service agent forwards dead letters.
resource "google_pubsub_topic_iam_member" "run_publisher" {
  topic  = google_pubsub_topic.memory_written.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.run.member
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.memory_written_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  subscription = google_pubsub_subscription.embed_push.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
