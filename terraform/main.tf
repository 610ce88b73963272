locals {
  name   = var.service_name
  is_dev = var.environment == "dev"

  labels = merge({
    app         = var.service_name
    environment = var.environment
    managed-by  = "terraform"
  }, var.labels)

  # Until Cloud Build pushes the first image, Cloud Run starts Google's hello container so
  # the service (and its URL) exists; cloudbuild.yaml deploys the real image.
  image = var.image != "" ? var.image : "us-docker.pkg.dev/cloudrun/container/hello"

  image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"

  topic_name = "${local.name}-memory-written"

  # Cloud SQL IAM database user names are the service account e-mail minus ".gserviceaccount.com".
  db_iam_user = {
    run             = trimsuffix(google_service_account.run.email, ".gserviceaccount.com")
    embed-memories  = trimsuffix(google_service_account.functions["embed-memories"].email, ".gserviceaccount.com")
    apply-retention = trimsuffix(google_service_account.functions["apply-retention"].email, ".gserviceaccount.com")
  }

  # Redis over TLS with AUTH; the instance's CA certificate is mounted from Secret Manager.
  redis_ca_dir  = "/secrets/redis-ca"
  redis_ca_file = "ca.pem"
  redis_url = format(
    "rediss://:%s@%s:%d/0?ssl_ca_certs=%s/%s&ssl_check_hostname=false",
    urlencode(google_redis_instance.cache.auth_string),
    google_redis_instance.cache.host,
    google_redis_instance.cache.port,
    local.redis_ca_dir,
    local.redis_ca_file,
  )

  # ------------------------------------------------------------------------------------
  # Environment of every workload, in one place. Every name here must be one that
  # services.config.Settings reads (tests/test_terraform_env_contract.py compares them with
  # services.config.env_names()); PORT is set by Cloud Run itself. "plain" values are set as
  # they are, "secret" values name a Secret Manager secret (latest version).
  # ------------------------------------------------------------------------------------
  # ID-token sign-in (Firebase / Identity Platform) only when a project is named.
  firebase_env = var.firebase_project_id == "" ? {} : {
    FIREBASE_PROJECT_ID = var.firebase_project_id
  }

  # DB_POOL_SIZE of the functions and jobs (capacity.tf counts their connections).
  job_pool_size = 2

  db_env = {
    INSTANCE_CONNECTION_NAME = google_sql_database_instance.main.connection_name
    DB_NAME                  = google_sql_database.app.name
    DB_IP_TYPE               = "private"
    LOG_LEVEL                = var.log_level
    EMBEDDING_PROVIDER       = var.embedding_provider
    EMBEDDING_MODEL          = var.embedding_model
  }

  env = {
    service = {
      plain = merge(local.db_env, local.firebase_env, {
        DB_USER          = local.db_iam_user.run
        DB_IAM_AUTH      = "true"
        DB_POOL_SIZE     = tostring(var.db_pool_size)
        WEB_CONCURRENCY  = tostring(var.processes)
        GUNICORN_THREADS = tostring(var.threads)
        EMBED_IN_PROCESS = tostring(var.embed_in_process)
        HNSW_INDEX       = tostring(var.hnsw_index)
        PUBSUB_TOPIC     = google_pubsub_topic.memory_written.id
        ARCHIVE_BUCKET   = google_storage_bucket.archive.name
        LLM_PROVIDERS    = var.llm_providers
      })
      secret = {
        ANTHROPIC_API_KEY = google_secret_manager_secret.api["anthropic-api-key"].secret_id
        OPENAI_API_KEY    = google_secret_manager_secret.api["openai-api-key"].secret_id
        REDIS_URL         = google_secret_manager_secret.redis_url.secret_id
      }
    }

    # The migration job connects as the built-in user that owns the schema (creating the
    # vector extension needs cloudsqlsuperuser); the app serves as the IAM users, which Cloud
    # SQL puts in the cloudsqliamserviceaccount role the migrations grant to.
    migrate = {
      plain = merge(local.db_env, {
        DB_USER          = google_sql_user.migrator.name
        DB_IAM_AUTH      = "false"
        DB_POOL_SIZE     = tostring(local.job_pool_size)
        EMBED_IN_PROCESS = "false"
        HNSW_INDEX       = tostring(var.hnsw_index)
      })
      secret = {
        DB_PASSWORD    = google_secret_manager_secret.db_migrator_password.secret_id
        OPENAI_API_KEY = google_secret_manager_secret.api["openai-api-key"].secret_id
      }
    }

    embed-memories = {
      plain = merge(local.db_env, {
        DB_USER          = local.db_iam_user["embed-memories"]
        DB_IAM_AUTH      = "true"
        DB_POOL_SIZE     = tostring(local.job_pool_size)
        EMBED_BATCH_SIZE = tostring(var.embed_batch_size)
        EMBED_IN_PROCESS = "false"
        LLM_PROVIDERS    = var.llm_providers
      })
      # The Anthropic key: the sweep also runs background reflection through the LLM router.
      secret = {
        ANTHROPIC_API_KEY = google_secret_manager_secret.api["anthropic-api-key"].secret_id
        OPENAI_API_KEY    = google_secret_manager_secret.api["openai-api-key"].secret_id
      }
    }

    apply-retention = {
      plain = merge(local.db_env, {
        DB_USER          = local.db_iam_user["apply-retention"]
        DB_IAM_AUTH      = "true"
        DB_POOL_SIZE     = tostring(local.job_pool_size)
        EMBED_IN_PROCESS = "false"
        ARCHIVE_BUCKET   = google_storage_bucket.archive.name
        # Only Cloud Scheduler's OIDC token for this function's URL is accepted.
        FUNCTION_AUTH            = "oidc"
        TRIGGER_SERVICE_ACCOUNTS = google_service_account.scheduler.email
        TRIGGER_AUDIENCE         = local.function_url["apply-retention"]
      })
      secret = {
        OPENAI_API_KEY = google_secret_manager_secret.api["openai-api-key"].secret_id
        REDIS_URL      = google_secret_manager_secret.redis_url.secret_id
      }
    }
  }

  # A gen2 function's URL, known before it exists (its own env names it as OIDC audience).
  function_url = { for k in keys(local.functions) : k => "https://${var.region}-${var.project_id}.cloudfunctions.net/${k}" }

  # Cloud Functions (gen2), one service account each. Entry points are defined in main.py
  # (tests/test_terraform_env_contract.py checks they exist).
  functions = {
    embed-memories = {
      entry_point = "embed_memories"
      description = "Embeds pending memories: pushed from ${local.topic_name} and swept by Cloud Scheduler."
      timeout     = 300
      memory      = "512Mi"
      redis       = false
    }
    apply-retention = {
      entry_point = "apply_retention"
      description = "Daily retention: TTL, decay, archive to GCS, purge threads, deletion requests."
      timeout     = 540
      memory      = "512Mi"
      redis       = true
    }
  }
}
