# Memory archives (JSONL written by apply_retention): uniform access, no public access,
# versioning, colder classes as they age, optional CMEK.
resource "google_storage_bucket" "archive" {
  name                        = "${var.project_id}-${local.name}-archive"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = local.is_dev
  labels                      = local.labels

  versioning {
    enabled = true
  }

  dynamic "encryption" {
    for_each = var.kms_key_name != "" ? [var.kms_key_name] : []
    content {
      default_kms_key_name = encryption.value
    }
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "archive/"
  }

  lifecycle_rule {
    condition {
      age = var.archive_nearline_after_days
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }
  lifecycle_rule {
    condition {
      age = var.archive_nearline_after_days * 3
    }
    action {
      type          = "SetStorageClass"
      storage_class = "COLDLINE"
    }
  }
  lifecycle_rule {
    condition {
      age = var.archive_nearline_after_days * 12
    }
    action {
      type          = "SetStorageClass"
      storage_class = "ARCHIVE"
    }
  }
  # Old versions (an archive rewritten or restored) go after 30 days.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "archive_retention" {
  bucket = google_storage_bucket.archive.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.functions["apply-retention"].member
}

# Privacy export/erase from the service reads and deletes a user's archives.
resource "google_storage_bucket_iam_member" "archive_run" {
  bucket = google_storage_bucket.archive.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.run.member
}

# Access logs of the buckets above (kept 90 days).
resource "google_storage_bucket" "access_logs" {
  # checkov:skip=CKV_GCP_62:this is the access-log bucket itself; logging it into itself would loop
  name                        = "${var.project_id}-${local.name}-access-logs"
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
      age = 90
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Cloud Storage's service agent writes the access logs.
resource "google_storage_bucket_iam_member" "access_logs_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}
