terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100 is the oldest release this module is tested with (it has
      # block_device_mappings.ebs.volume_initialization_rate). Nothing used here
      # changed in 6.0, which removed launch template arguments this module does not use.
      version = ">= 5.100, < 7.0"
    }
  }
}
