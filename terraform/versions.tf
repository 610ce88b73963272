terraform {
  required_version = ">= 1.6.0"

  required_providers {
    # The schema tools/tfcheck checks against is hashicorp/google 6.50.0; everything here is
    # GA, so google-beta is not needed.
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }

  # Remote state in a GCS bucket created beforehand (docs/DEPLOY.md step 2):
  #   terraform init -backend-config="bucket=${PROJECT_ID}-tfstate" -backend-config="prefix=memory-agent/dev"
  backend "gcs" {}
}
