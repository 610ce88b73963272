output "service_url" {
  description = "HTTPS endpoint of the Cloud Run service."
  value       = google_cloud_run_v2_service.app.uri
}

output "custom_domain_records" {
  description = "DNS records to create for custom_domain (empty without one)."
  value       = [for r in try(google_cloud_run_domain_mapping.app[0].status[0].resource_records, []) : { type = r.type, name = r.name, data = r.rrdata }]
}

output "service_name" {
  description = "Cloud Run service name (cloudbuild.yaml _SERVICE)."
  value       = google_cloud_run_v2_service.app.name
}

output "region" {
  description = "Region of the service, functions and jobs (cloudbuild.yaml _REGION)."
  value       = var.region
}

output "image_repository" {
  description = "Artifact Registry path images are pushed to (cloudbuild.yaml _REPOSITORY is its last part)."
  value       = local.image_repository
}

output "migrate_job" {
  description = "Cloud Run job that runs the migrations."
  value       = google_cloud_run_v2_job.migrate.name
}

output "admin_job" {
  description = "Cloud Run job that runs `python -m services.admin` inside the VPC (first API key: docs/DEPLOY.md)."
  value       = google_cloud_run_v2_job.admin.name
}

output "functions" {
  description = "Cloud Functions by name: entry point and URL."
  value = {
    for k, f in google_cloudfunctions2_function.fn : k => {
      entry_point = local.functions[k].entry_point
      url         = f.url
    }
  }
}

output "functions_source_bucket" {
  description = "Bucket cloudbuild.yaml uploads the functions' source zip to (_FUNCTIONS_SOURCE_BUCKET)."
  value       = google_storage_bucket.functions_source.name
}

output "service_accounts" {
  description = "E-mails of the service accounts (deployer: the Cloud Build trigger's account)."
  value = merge(
    {
      run         = google_service_account.run.email
      migrate     = google_service_account.migrate.email
      deployer    = google_service_account.deployer.email
      scheduler   = google_service_account.scheduler.email
      pubsub_push = google_service_account.pubsub_push.email
      fn_build    = google_service_account.functions_build.email
    },
    { for k, sa in google_service_account.functions : "fn_${k}" => sa.email },
  )
}

output "sql_instance_connection_name" {
  description = "INSTANCE_CONNECTION_NAME of the Cloud SQL instance."
  value       = google_sql_database_instance.main.connection_name
}

output "sql_private_ip" {
  description = "Private IP of the Cloud SQL instance."
  value       = google_sql_database_instance.main.private_ip_address
}

output "redis_host" {
  description = "Private IP of the Memorystore instance (the full URL with AUTH is in Secret Manager)."
  value       = google_redis_instance.cache.host
}

output "pubsub_topic" {
  description = "Topic the service publishes changed memory ids to."
  value       = google_pubsub_topic.memory_written.id
}

output "archive_bucket" {
  description = "Bucket of memory archives."
  value       = google_storage_bucket.archive.name
}

output "api_key_secrets" {
  description = "Secret Manager secrets to add the API keys to (gcloud secrets versions add NAME --data-file=-)."
  value       = [for s in google_secret_manager_secret.api : s.secret_id]
}

output "db_connections" {
  description = "Connections the service, the functions and the jobs can open at most, and what max_connections minus the reserve leaves (capacity.tf)."
  value       = module.db_connections.connections
}
