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

  # With the load balancer, a launch lifecycle hook holds each new instance until its user-data
  # completes the action (models loaded, UI answering). Empty without: no hook to complete.
  lifecycle_hook_name = var.create_load_balancer ? "bakery-ready" : ""
  # Target tracking needs the load balancer's metric and room between min and max.
  scales = var.create_load_balancer && var.max_size > var.min_size
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

# With the load balancer, the instance itself says when it can take traffic and when it must
# stop: the least AWS allows for that, each on this fleet's own group or target group only.
data "aws_iam_policy_document" "lifecycle" {
  count = var.create_load_balancer ? 1 : 0

  statement {
    sid       = "CompleteOwnLaunchLifecycleAction"
    actions   = ["autoscaling:CompleteLifecycleAction"]
    resources = [aws_autoscaling_group.this.arn]
  }

  statement {
    sid       = "LeaveOwnTargetGroupOnSpotInterruption"
    actions   = ["elasticloadbalancing:DeregisterTargets"]
    resources = [aws_lb_target_group.this[0].arn]
  }
}

resource "aws_iam_role_policy" "lifecycle" {
  count = var.create_load_balancer ? 1 : 0

  name   = "bakery-lifecycle"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.lifecycle[0].json
}

################################################################################
# Security group: no ingress unless asked, and then only the UI port
################################################################################

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-"
  # Unchanged with the load balancer: a new description would replace the group under running instances.
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

resource "aws_vpc_security_group_ingress_rule" "ui_from_load_balancer" {
  count = var.create_load_balancer ? 1 : 0

  security_group_id            = aws_security_group.this.id
  description                  = "UI from the load balancer (sign-in in front)"
  ip_protocol                  = "tcp"
  from_port                    = var.ui_port
  to_port                      = var.ui_port
  referenced_security_group_id = aws_security_group.load_balancer[0].id

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
    # Empty without the load balancer: nothing to complete, nothing to leave.
    lifecycle_hook_name    = local.lifecycle_hook_name
    autoscaling_group_name = var.create_load_balancer ? var.name : ""
    target_group_arn       = var.create_load_balancer ? aws_lb_target_group.this[0].arn : ""
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

  # The group registers its in-service instances with the target group, deregisters (and
  # drains, deregistration_delay) each before it terminates it, and replaces the ones whose
  # UI stops answering the load balancer's health check.
  target_group_arns = var.create_load_balancer ? [aws_lb_target_group.this[0].arn] : null
  health_check_type = var.create_load_balancer ? "ELB" : null

  # Created with the group, so that its very first instances are held too; the separate
  # aws_autoscaling_lifecycle_hook below keeps it up to date afterwards.
  dynamic "initial_lifecycle_hook" {
    for_each = var.create_load_balancer ? [local.lifecycle_hook_name] : []

    content {
      name                 = initial_lifecycle_hook.value
      lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
      default_result       = "ABANDON"
      heartbeat_timeout    = var.lifecycle_hook_heartbeat_timeout
    }
  }

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
      condition     = var.min_size <= var.max_size && (var.desired_capacity == null || try(var.min_size <= var.desired_capacity && var.desired_capacity <= var.max_size, false))
      error_message = "desired_capacity (${var.desired_capacity == null ? "null" : var.desired_capacity}) must lie between min_size (${var.min_size}) and max_size (${var.max_size})."
    }
  }
}

# The launch hook as the group has it: PutLifecycleHook creates or updates by name, so this
# adopts the one created with the group, applies later changes (initial_lifecycle_hook is read
# only at creation) and adds it to a group that existed before the load balancer was turned on.
resource "aws_autoscaling_lifecycle_hook" "ready" {
  count = var.create_load_balancer ? 1 : 0

  name                   = local.lifecycle_hook_name
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_LAUNCHING"
  # An instance that never reports ready is terminated and replaced, never put in service.
  default_result    = "ABANDON"
  heartbeat_timeout = var.lifecycle_hook_heartbeat_timeout
}

# Scale on requests per instance. Scale-in needs no termination hook: the group deregisters the
# instance from the target group and waits out deregistration_delay (the requests in flight,
# streaming generations included) before it terminates it, and the instance has nothing else
# to save. AWS gives no means to pick the idle instance for scale-in.
resource "aws_autoscaling_policy" "requests" {
  count = local.scales ? 1 : 0

  name                   = "${var.name}-requests-per-instance"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this[0].arn_suffix}/${aws_lb_target_group.this[0].arn_suffix}"
    }
    target_value = var.target_requests_per_instance
  }

  # The metric exists once the target group is behind a listener of the load balancer.
  depends_on = [aws_lb_listener.https]
}

################################################################################
# Load balancer (create_load_balancer): HTTPS, sign-in, then the UI
################################################################################

data "aws_ssm_parameter" "oidc_client_secret" {
  count = var.create_load_balancer && var.oidc != null ? 1 : 0

  # A SecureString, or /aws/reference/secretsmanager/NAME: the name comes in, never the value.
  name            = var.oidc.client_secret_ssm_parameter
  with_decryption = true
}

locals {
  load_balancer_listeners = var.create_load_balancer ? {
    for pair in setproduct(["http", "https"], var.load_balancer_ingress_cidrs) : "${pair[0]} ${pair[1]}" => {
      port = pair[0] == "https" ? 443 : 80
      cidr = pair[1]
    }
  } : {}
}

resource "aws_security_group" "load_balancer" {
  count = var.create_load_balancer ? 1 : 0

  name_prefix = "${var.name}-lb-"
  description = "gpu-ami-bakery fleet ${var.name}: load balancer, 443 and 80 (redirect) in, the UI port out"
  vpc_id      = var.vpc_id

  tags = merge({ Name = "${var.name}-lb" }, local.tags)

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "load_balancer" {
  for_each = local.load_balancer_listeners

  #checkov:skip=CKV_AWS_260:Port 80 only answers with a redirect to 443, where everyone must sign in first; load_balancer_ingress_cidrs narrows both.
  security_group_id = aws_security_group.load_balancer[0].id
  description       = each.value.port == 443 ? "HTTPS (sign-in first) from ${each.value.cidr}" : "HTTP, redirected to HTTPS, from ${each.value.cidr}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "load_balancer_to_ui" {
  count = var.create_load_balancer ? 1 : 0

  security_group_id            = aws_security_group.load_balancer[0].id
  description                  = "To the UI port of the fleet's instances (requests and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = var.ui_port
  to_port                      = var.ui_port
  referenced_security_group_id = aws_security_group.this.id

  tags = local.tags
}

resource "aws_lb" "this" {
  count = var.create_load_balancer ? 1 : 0

  #checkov:skip=CKV_AWS_150:invoke destroy must be able to remove the fleet; the load balancer holds no data, and a new one is one apply away.
  #checkov:skip=CKV2_AWS_28:Sign-in (authenticate-oidc or -cognito) is in front of every request; associate a WAF web ACL outside this module where one is required.
  #checkov:skip=CKV_AWS_91:Access logs need a bucket with an ELB write policy, which this module does not create: set load_balancer_access_logs_bucket to turn them on.
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = var.load_balancer_internal
  security_groups            = [aws_security_group.load_balancer[0].id]
  subnets                    = var.load_balancer_subnet_ids != null ? var.load_balancer_subnet_ids : var.subnet_ids
  idle_timeout               = var.load_balancer_idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = false

  dynamic "access_logs" {
    for_each = var.load_balancer_access_logs_bucket != null ? [var.load_balancer_access_logs_bucket] : []

    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.load_balancer_certificate_arn != null
      error_message = "create_load_balancer needs load_balancer_certificate_arn: the load balancer serves HTTPS only."
    }

    precondition {
      condition     = (var.oidc != null) != (var.cognito != null)
      error_message = "create_load_balancer needs exactly one of oidc or cognito: the UI has no authentication of its own, so sign-in goes in front of it."
    }
  }
}

resource "aws_lb_target_group" "this" {
  count = var.create_load_balancer ? 1 : 0

  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; behind it the UI speaks plain HTTP inside the VPC, reachable from the load balancer's security group only.
  name                 = var.name
  port                 = var.ui_port
  protocol             = "HTTP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay

  health_check {
    # Through the UI to Ollama: what the user-data waits for before the instance takes traffic.
    path                = "/api/tags"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  count = var.create_load_balancer ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.load_balancer_ssl_policy
  certificate_arn   = var.load_balancer_certificate_arn

  dynamic "default_action" {
    for_each = var.oidc != null ? [var.oidc] : []

    content {
      type  = "authenticate-oidc"
      order = 1

      authenticate_oidc {
        issuer                     = default_action.value.issuer
        authorization_endpoint     = default_action.value.authorization_endpoint
        token_endpoint             = default_action.value.token_endpoint
        user_info_endpoint         = default_action.value.user_info_endpoint
        client_id                  = default_action.value.client_id
        client_secret              = data.aws_ssm_parameter.oidc_client_secret[0].value
        scope                      = default_action.value.scope
        session_timeout            = default_action.value.session_timeout
        on_unauthenticated_request = "authenticate"
      }
    }
  }

  dynamic "default_action" {
    for_each = var.cognito != null ? [var.cognito] : []

    content {
      type  = "authenticate-cognito"
      order = 1

      authenticate_cognito {
        user_pool_arn              = default_action.value.user_pool_arn
        user_pool_client_id        = default_action.value.user_pool_client_id
        user_pool_domain           = default_action.value.user_pool_domain
        scope                      = default_action.value.scope
        session_timeout            = default_action.value.session_timeout
        on_unauthenticated_request = "authenticate"
      }
    }
  }

  default_action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.this[0].arn
  }

  tags = local.tags
}

resource "aws_lb_listener" "http" {
  count = var.create_load_balancer ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = local.tags
}

# The UI's /api/model makes Ollama download whatever model it is asked for.
resource "aws_lb_listener_rule" "no_model_pulls" {
  count = var.create_load_balancer && !var.allow_model_pulls ? 1 : 0

  listener_arn = aws_lb_listener.https[0].arn
  priority     = 1

  action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "Model pulls are turned off for this fleet (allow_model_pulls)."
      status_code  = "403"
    }
  }

  condition {
    path_pattern {
      values = ["/api/model", "/api/model/*"]
    }
  }

  tags = local.tags
}
