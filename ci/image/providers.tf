# The provider the job image mirrors for terraform/ and its tests (ci/image/Dockerfile), so
# that `terraform init` downloads nothing in a job. Keep it within terraform/versions.tf.
terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}
