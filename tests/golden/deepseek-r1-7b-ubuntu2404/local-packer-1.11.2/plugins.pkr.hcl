packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      # 1.3.8: spot_allocation_strategy; 1.1.6: imds_support.
      version = ">= 1.3.8"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
