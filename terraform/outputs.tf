output "autoscaling_group_name" {
  description = "Name of the Auto Scaling group."
  value       = try(aws_autoscaling_group.this.name, null)
}

output "autoscaling_group_arn" {
  description = "ARN of the Auto Scaling group."
  value       = try(aws_autoscaling_group.this.arn, null)
}

output "launch_template_id" {
  description = "ID of the launch template."
  value       = try(aws_launch_template.this.id, null)
}

output "launch_template_latest_version" {
  description = "Latest version of the launch template (the one the group launches)."
  value       = try(aws_launch_template.this.latest_version, null)
}

output "security_group_id" {
  description = "ID of the security group the module creates for the instances."
  value       = try(aws_security_group.this.id, null)
}

output "ami_id" {
  description = "ID of the AMI the launch template uses, as resolved from ami_ssm_parameter or the catalog."
  value       = try(data.aws_ami.this.id, null)
}

output "models" {
  description = "Models the instances load at boot (var.models, or the AMI's bakery:models tag)."
  value       = try(local.models, null)
}

output "iam_role_name" {
  description = "Name of the instance IAM role (attach further policies to it, or use iam_role_additional_policies)."
  value       = try(aws_iam_role.this.name, null)
}

output "iam_role_arn" {
  description = "ARN of the instance IAM role."
  value       = try(aws_iam_role.this.arn, null)
}

output "iam_instance_profile_arn" {
  description = "ARN of the instance profile."
  value       = try(aws_iam_instance_profile.this.arn, null)
}

output "load_balancer_arn" {
  description = "ARN of the load balancer (create_load_balancer), else null."
  value       = try(aws_lb.this[0].arn, null)
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer: point a name the certificate covers at it (CNAME, or an alias record with load_balancer_zone_id)."
  value       = try(aws_lb.this[0].dns_name, null)
}

output "load_balancer_zone_id" {
  description = "Route 53 hosted zone ID of the load balancer, for an alias record."
  value       = try(aws_lb.this[0].zone_id, null)
}

output "load_balancer_security_group_id" {
  description = "ID of the load balancer's security group (the only source the instances accept ui_port from, besides ui_ingress_cidrs)."
  value       = try(aws_security_group.load_balancer[0].id, null)
}

output "target_group_arn" {
  description = "ARN of the target group the instances serve in once ready."
  value       = try(aws_lb_target_group.this[0].arn, null)
}

output "lifecycle_hook_name" {
  description = "Name of the launch lifecycle hook that holds new instances until their models are loaded and the UI answers."
  value       = try(aws_autoscaling_lifecycle_hook.ready[0].name, null)
}

output "scaling_policy_name" {
  description = "Name of the target tracking policy on requests per instance (when max_size is above min_size)."
  value       = try(aws_autoscaling_policy.requests[0].name, null)
}
