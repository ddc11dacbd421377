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
