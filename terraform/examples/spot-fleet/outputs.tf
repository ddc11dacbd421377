output "autoscaling_group_name" {
  description = "Name of the Auto Scaling group."
  value       = module.fleet.autoscaling_group_name
}

output "ami_id" {
  description = "The AMI the fleet launches."
  value       = module.fleet.ami_id
}

output "security_group_id" {
  description = "Security group of the instances."
  value       = module.fleet.security_group_id
}
