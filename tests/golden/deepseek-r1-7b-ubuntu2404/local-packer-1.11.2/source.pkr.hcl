locals {
  tags = merge(var.tags, {
    "bakery:managed-by" = "gpu-ami-bakery"
    "bakery:image"      = var.image_name
    "bakery:run-id"     = var.build_id
  })
}

source "amazon-ebs" "image" {
  region     = var.region
  source_ami = var.source_ami
  ami_name   = "${var.image_name}-${var.build_id}"

  # Where the build instance runs, decided at bake time: empty values leave it to Packer
  # (the default VPC, a temporary security group, no instance profile).
  subnet_id            = var.subnet_id
  security_group_ids   = var.security_group_ids
  iam_instance_profile = var.iam_instance_profile

  # Local mode: the emulator has no machine behind it, so nothing can be provisioned.
  custom_endpoint_ec2     = var.ec2_endpoint
  skip_region_validation  = true
  skip_profile_validation = true
  communicator            = "none"

  # For the emulator only: moto answers a CreateImage that tags snapshots with an error
  # (NotImplementedError), so the run tags stay off the new AMI (amazon plugin >= 1.3.7); tags
  # and snapshot_tags below still tag the AMI and its snapshots. AWS bakes keep the default.
  skip_ami_run_tags = true

  # Baking needs no GPU: cheap CPU spot capacity, any of these types.
  spot_price          = "auto"
  spot_instance_types = var.instance_types

  # Modern spot builds use a CreateFleet: let it pick the deepest, cheapest pools.
  spot_allocation_strategy = "price-capacity-optimized"

  # IMDSv2 only, on the build instance and on every instance launched from the AMI.
  imds_support = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_type           = "gp3"
    volume_size           = var.root_volume_gib
    iops                  = 3000
    throughput            = 250
    encrypted             = true
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
  }

  # Big AMIs take a while to snapshot: wait up to two hours instead of the default ten minutes.
  aws_polling {
    delay_seconds = 15
    max_attempts  = 480
  }

  tags            = local.tags
  snapshot_tags   = local.tags
  run_tags        = merge(local.tags, { Name = "bakery-build-${var.image_name}" })
  run_volume_tags = local.tags
}
