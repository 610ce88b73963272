# The Cloud Run service. Terraform creates it and owns its configuration; Cloud Build
# (cloudbuild.yaml) rolls out new images as tagged no-traffic revisions and moves traffic,
# so the image, the client annotations and the traffic split are left to it.

resource "google_cloud_run_v2_service" "app" {
  name                = local.name
  location            = var.region
  description         = "Memory Agent: chat with long-term memory."
  ingress             = var.ingress
  deletion_protection = !local.is_dev
  labels              = local.labels

  template {
    service_account                  = google_service_account.run.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "${var.request_timeout_seconds}s"
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    encryption_key                   = var.kms_key_name != "" ? var.kms_key_name : null

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    # Direct VPC egress to Cloud SQL's and Memorystore's private IPs. The app reaches
    # Cloud SQL through the Cloud SQL Python connector (INSTANCE_CONNECTION_NAME, private IP,
    # IAM login), so no /cloudsql socket volume is mounted.
    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = google_compute_network.vpc.id
        subnetwork = google_compute_subnetwork.run.id
      }
    }

    containers {
      name  = "app"
      image = local.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.env.service.plain
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.env.service.secret
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      volume_mounts {
        name       = "redis-ca"
        mount_path = local.redis_ca_dir
      }

      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 3
        timeout_seconds       = 2
        failure_threshold     = 20
        http_get {
          path = "/readyz"
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/healthz"
          port = 8080
        }
      }
    }

    volumes {
      name = "redis-ca"
      secret {
        secret = google_secret_manager_secret.redis_ca.secret_id
        items {
          path    = local.redis_ca_file
          version = "latest"
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      client,
      client_version,
      template[0].containers[0].image,
      template[0].revision,
      traffic,
    ]
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.readers,
    google_secret_manager_secret_version.redis_url,
    google_secret_manager_secret_version.redis_ca,
  ]
}

# Anyone may call the HTTPS endpoint: the app authenticates every API call itself (API keys,
# ID tokens). With public_access = false, callers need roles/run.invoker as well.
resource "google_cloud_run_v2_service_iam_member" "public" {
  count = var.public_access ? 1 : 0

  name     = google_cloud_run_v2_service.app.name
  location = google_cloud_run_v2_service.app.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Optional custom domain (docs/DEPLOY.md "Chat page, sign-in and a domain"): verify the
# domain for the project first; the DNS records to create are in output
# custom_domain_records. Cloud Run provisions the certificate once they resolve.
resource "google_cloud_run_domain_mapping" "app" {
  count = var.custom_domain != "" ? 1 : 0

  name     = var.custom_domain
  location = var.region

  metadata {
    namespace = var.project_id
    labels    = local.labels
  }

  spec {
    route_name = google_cloud_run_v2_service.app.name
  }
}

# The deployer smoke-tests tagged revisions before moving traffic.
resource "google_cloud_run_v2_service_iam_member" "deployer_invoker" {
  name     = google_cloud_run_v2_service.app.name
  location = google_cloud_run_v2_service.app.location
  role     = "roles/run.invoker"
  member   = google_service_account.deployer.member
}

# Migrations: a Cloud Run job running `python -m services.migrate` with the service's image
# as the built-in user that owns the schema. cloudbuild.yaml points it at each new image and
# executes it before the new revision is deployed.
resource "google_cloud_run_v2_job" "migrate" {
  name                = "${local.name}-migrate"
  location            = var.region
  deletion_protection = false
  labels              = local.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.migrate.email
      timeout         = "600s"
      max_retries     = 1
      encryption_key  = var.kms_key_name != "" ? var.kms_key_name : null

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = google_compute_network.vpc.id
          subnetwork = google_compute_subnetwork.run.id
        }
      }

      containers {
        image   = local.image
        command = ["python", "-m", "services.migrate"]

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        dynamic "env" {
          for_each = local.env.migrate.plain
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.env.migrate.secret
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      client,
      client_version,
      template[0].template[0].containers[0].image,
    ]
  }

  depends_on = [
    google_secret_manager_secret_iam_member.readers,
    google_secret_manager_secret_version.db_migrator_password,
  ]
}

# Operator commands (`python -m services.admin`) inside the VPC, as the same built-in user
# as the migrations: Cloud SQL has no public IP, so this is how the first API key gets in.
# The job's output goes to Cloud Logging, so it is given a key's hash, never the key:
#   python -m services.admin keys generate                     (on your machine)
#   gcloud run jobs execute <name>-admin --region=REGION --wait --args=keys,add-hash,USER,HASH
# `keys create` and `keys generate` refuse to run inside a Cloud Run job. cloudbuild.yaml
# keeps its image at the service's.
resource "google_cloud_run_v2_job" "admin" {
  name                = "${local.name}-admin"
  location            = var.region
  deletion_protection = false
  labels              = local.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.migrate.email
      timeout         = "300s"
      # A retried add-hash would only report that the key already exists.
      max_retries    = 0
      encryption_key = var.kms_key_name != "" ? var.kms_key_name : null

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = google_compute_network.vpc.id
          subnetwork = google_compute_subnetwork.run.id
        }
      }

      containers {
        image   = local.image
        command = ["python", "-m", "services.admin"]
        args    = ["keys", "list"]

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        dynamic "env" {
          for_each = local.env.migrate.plain
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.env.migrate.secret
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      client,
      client_version,
      template[0].template[0].containers[0].image,
    ]
  }

  depends_on = [
    google_secret_manager_secret_iam_member.readers,
    google_secret_manager_secret_version.db_migrator_password,
  ]
}
