provider "aws" {
  region = local.region
}

locals {
  region = "us-east-1"
  name   = "deepseek-r1"

  tags = {
    Project = "private-llm"
  }
}

# The account's default VPC, to keep the example short: use your own VPC and private
# subnets (with a NAT gateway or VPC endpoints for Systems Manager) in production.
data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }
}

module "fleet" {
  source = "../.."

  name       = local.name
  image_name = "deepseek-r1-7b"

  vpc_id     = data.aws_vpc.default.id
  subnet_ids = data.aws_subnets.default.ids

  instance_types   = ["g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6e.xlarge"]
  min_size         = 0
  max_size         = 1
  desired_capacity = 1

  # Reach the UI through Session Manager port forwarding; uncomment to open it to your network.
  # ui_ingress_cidrs = ["203.0.113.0/24"]

  tags = local.tags
}
