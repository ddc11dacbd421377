# Test root: the module against the local AWS emulator (moto). Endpoints, fake credentials
# and skip_* flags live here, never in the module. The tests copy this root and the module
# into a temporary directory with the repository's layout, so nothing is written in the tree.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}

variable "endpoint" {
  description = "URL of the emulator."
  type        = string
}

variable "fleets" {
  description = "One instance of the module per key; each value holds inputs of the module, as the test writes them."
  type        = any
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = true

  endpoints {
    autoscaling = var.endpoint
    ec2         = var.endpoint
    elbv2       = var.endpoint
    iam         = var.endpoint
    ssm         = var.endpoint
    sts         = var.endpoint
  }
}

module "fleet" {
  source   = "../../../../terraform"
  for_each = var.fleets

  name             = each.value.name
  image_name       = each.value.image_name
  vpc_id           = each.value.vpc_id
  subnet_ids       = each.value.subnet_ids
  desired_capacity = try(each.value.desired_capacity, 0)
  min_size         = try(each.value.min_size, 0)
  max_size         = try(each.value.max_size, 1)
  ui_ingress_cidrs = try(each.value.ui_ingress_cidrs, [])
  ui_port          = try(each.value.ui_port, 3000)
  instance_types   = try(each.value.instance_types, ["g5.xlarge", "g6.xlarge"])

  ami_ssm_parameter = try(each.value.ami_ssm_parameter, null)
  require_verified  = try(each.value.require_verified, true)
  models            = try(each.value.models, null)

  # moto launches nothing from a block device mapping without a size (AWS takes the
  # snapshot's): the tests that launch an instance set one.
  root_volume_size = try(each.value.root_volume_size, null)

  volume_initialization_rate = try(each.value.volume_initialization_rate, null)
  kms_key_id                 = try(each.value.kms_key_id, null)

  create_load_balancer          = try(each.value.create_load_balancer, false)
  load_balancer_certificate_arn = try(each.value.load_balancer_certificate_arn, null)
  oidc                          = try(each.value.oidc, null)
  cognito                       = try(each.value.cognito, null)
  allow_model_pulls             = try(each.value.allow_model_pulls, false)
  target_requests_per_instance  = try(each.value.target_requests_per_instance, 10)
  deregistration_delay          = try(each.value.deregistration_delay, 300)

  lifecycle_hook_heartbeat_timeout = try(each.value.lifecycle_hook_heartbeat_timeout, 1800)

  tags = { Project = "bakery-tests" }
}

output "fleets" {
  description = "Every output of every instance of the module, by key."
  value       = module.fleet
}
