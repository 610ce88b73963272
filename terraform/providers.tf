provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = local.labels

  # The billing budget API is called with the project as quota project.
  user_project_override = true
  billing_project       = var.project_id
}
