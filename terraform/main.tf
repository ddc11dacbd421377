data "aws_partition" "current" {}

locals {
  tags = merge(var.tags, {
    "bakery:managed-by" = "gpu-ami-bakery"
    "bakery:image"      = var.image_name
  })
  # Name goes on what the group launches unless the caller's tags set one.
  launched_tags = merge({ Name = var.name }, local.tags)

  # The container image the bake pre-pulls and tags inside the AMI.
  ui_image = "bakery/ui:baked"
}

################################################################################
# AMI: published SSM parameter, or this account's catalog. Never a literal ID.
################################################################################

data "aws_ssm_parameter" "ami" {
  count = var.ami_ssm_parameter != null ? 1 : 0

  name = var.ami_ssm_parameter
}

locals {
  # Tags the bakery puts on the AMIs it bakes and verifies.
  ami_catalog_filters = merge(
    {
      "tag:bakery:managed-by" = "gpu-ami-bakery"
      "tag:bakery:image"      = var.image_name
    },
    var.require_verified ? { "tag:bakery:verification" = "passed" } : {},
  )
  ami_filters = merge(
    { state = "available" },
    # An aws:ec2:image parameter holds a plain AMI ID, so its value is not a secret.
    var.ami_ssm_parameter != null ? { "image-id" = data.aws_ssm_parameter.ami[0].insecure_value } : local.ami_catalog_filters,
  )
}

data "aws_ami" "this" {
  most_recent = true
  # A published AMI may have been shared from another account: the ID alone selects it.
  owners = var.ami_ssm_parameter != null ? null : ["self"]

  dynamic "filter" {
    for_each = local.ami_filters

    content {
      name   = filter.key
      values = [filter.value]
    }
  }
}

locals {
  ami_models_tag = lookup(data.aws_ami.this.tags, "bakery:models", null)
  models = var.models != null ? var.models : (
    local.ami_models_tag == null ? [] : [for m in split(",", local.ami_models_tag) : trimspace(m) if trimspace(m) != ""]
  )

  ami_root_volume_size = try(one([
    for bdm in data.aws_ami.this.block_device_mappings : tonumber(bdm.ebs.volume_size)
    if bdm.device_name == data.aws_ami.this.root_device_name
  ]), null)
}

################################################################################
# Instance role: Session Manager instead of SSH (no key pair, no port 22)
################################################################################

data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "EC2AssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.${data.aws_partition.current.dns_suffix}"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix          = "${var.name}-"
  description          = "Instances of the gpu-ami-bakery fleet ${var.name} (Session Manager access)"
  assume_role_policy   = data.aws_iam_policy_document.assume_role.json
  permissions_boundary = var.iam_role_permissions_boundary

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "this" {
  for_each = merge(
    { AmazonSSMManagedInstanceCore = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore" },
    var.iam_role_additional_policies,
  )

  role       = aws_iam_role.this.name
  policy_arn = each.value
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.this.name

  tags = local.tags
}

################################################################################
# Security group: no ingress unless asked, and then only the UI port
################################################################################

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-"
  description = "gpu-ami-bakery fleet ${var.name}: UI port from ui_ingress_cidrs only, never Ollama"
  vpc_id      = var.vpc_id

  tags = merge({ Name = var.name }, local.tags)

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ui" {
  for_each = toset(concat(var.ui_ingress_cidrs, var.ui_public_ingress ? ["0.0.0.0/0"] : []))

  security_group_id = aws_security_group.this.id
  description       = each.value == "0.0.0.0/0" ? "UI (no authentication) from anywhere (ui_public_ingress)" : "UI (no authentication) from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.ui_port
  to_port           = var.ui_port
  cidr_ipv4         = each.value

  tags = local.tags
}

# Egress stays open: the SSM agent reaches the Systems Manager endpoints over HTTPS
# (unless the VPC has interface endpoints for them), and the OS reaches its package
# mirrors for security updates. Nothing is pulled at boot: the AMI carries the models and the UI.
resource "aws_vpc_security_group_egress_rule" "all" {
  for_each = {
    ipv4 = { cidr_ipv4 = "0.0.0.0/0", cidr_ipv6 = null }
    ipv6 = { cidr_ipv4 = null, cidr_ipv6 = "::/0" }
  }

  #checkov:skip=CKV_AWS_382:Egress is open on purpose: the SSM agent needs the Systems Manager endpoints and the OS its package mirrors; see the comment above and the README.
  security_group_id = aws_security_group.this.id
  description       = "All outbound (${each.key}): Systems Manager endpoints, package mirrors"
  ip_protocol       = "-1"
  cidr_ipv4         = each.value.cidr_ipv4
  cidr_ipv6         = each.value.cidr_ipv6

  tags = local.tags
}

################################################################################
# Launch template
################################################################################

resource "aws_launch_template" "this" {
  name                   = var.name
  description            = "gpu-ami-bakery ${var.image_name}"
  image_id               = data.aws_ami.this.id
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  vpc_security_group_ids = concat([aws_security_group.this.id], var.additional_security_group_ids)

  # IMDSv2 only; a hop limit of 1 keeps the instance credentials away from
  # bridged containers (the UI runs on the host network and does not need them).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = data.aws_ami.this.root_device_name

    ebs {
      volume_type                = "gp3"
      volume_size                = var.root_volume_size
      iops                       = var.root_volume_iops
      throughput                 = var.root_volume_throughput
      encrypted                  = true
      kms_key_id                 = var.kms_key_id
      delete_on_termination      = true
      volume_initialization_rate = var.volume_initialization_rate
    }
  }

  user_data = base64encode(templatefile("${path.module}/user-data.sh.tftpl", {
    ui_image          = local.ui_image
    ui_port           = var.ui_port
    ui_ollama_url_env = var.ui_ollama_url_env
    models            = local.models
  }))

  dynamic "tag_specifications" {
    for_each = ["instance", "volume", "network-interface"]

    content {
      resource_type = tag_specifications.value
      tags          = local.launched_tags
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.models != null || local.ami_models_tag != null
      error_message = "AMI ${data.aws_ami.this.id} has no bakery:models tag (tags do not cross accounts): set var.models to the models it carries, or [] to load none at boot."
    }

    precondition {
      condition     = alltrue([for m in local.models : can(regex("^[A-Za-z0-9][A-Za-z0-9._:/-]*$", m))])
      error_message = "The bakery:models tag of AMI ${data.aws_ami.this.id} holds a name that is not an Ollama model name: ${jsonencode(local.models)}."
    }

    precondition {
      condition     = var.root_volume_size == null || local.ami_root_volume_size == null || try(var.root_volume_size >= local.ami_root_volume_size, true)
      error_message = "root_volume_size (${coalesce(var.root_volume_size, 0)} GiB) is smaller than the root snapshot of AMI ${data.aws_ami.this.id} (${coalesce(local.ami_root_volume_size, 0)} GiB)."
    }
  }
}

################################################################################
# Auto Scaling group: spot across several GPU types
################################################################################

resource "aws_autoscaling_group" "this" {
  name                      = var.name
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  vpc_zone_identifier       = var.subnet_ids
  wait_for_capacity_timeout = var.wait_for_capacity_timeout

  # Launch a replacement as soon as EC2 says a spot instance is at elevated risk
  # of interruption, instead of waiting for the two-minute notice.
  capacity_rebalance = true

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.on_demand_base_capacity
      on_demand_percentage_above_base_capacity = var.on_demand_percentage_above_base_capacity
      spot_allocation_strategy                 = var.spot_allocation_strategy
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.this.id
        version            = aws_launch_template.this.latest_version
      }

      dynamic "override" {
        for_each = var.instance_types

        content {
          instance_type = override.value
        }
      }
    }
  }

  dynamic "tag" {
    for_each = local.launched_tags

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    precondition {
      condition     = var.min_size <= var.desired_capacity && var.desired_capacity <= var.max_size
      error_message = "desired_capacity (${var.desired_capacity}) must lie between min_size (${var.min_size}) and max_size (${var.max_size})."
    }
  }
}
