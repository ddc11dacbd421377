# Values reach Packer as variables: definition values from deepseek-r1-7b-ubuntu2404.pkrvars.hcl,
# build-time values (region, source AMI, build ID) from -var on the command line.

variable "region" {
  type = string
}

variable "source_ami" {
  type        = string
  description = "Resolved at bake time from the definition's SSM parameter or AMI filter."
}

variable "build_id" {
  type        = string
  description = "Unique per bake; tags every resource of the build so a failed one can be found."
}

variable "ec2_endpoint" {
  type        = string
  description = "The local AWS emulator's URL."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "The subnet of the build instance (resolved at bake time); empty: Packer's choice in the default VPC."
}

variable "security_group_ids" {
  type        = list(string)
  default     = []
  description = "Security groups of the build instance; empty: a temporary group."
}

variable "iam_instance_profile" {
  type        = string
  default     = ""
  description = "The build instance's profile (Session Manager, s3:// models): named, or made for the bake."
}

variable "image_name" {
  type = string
}

variable "instance_types" {
  type        = list(string)
  description = "Spot instance types for the build, tried by the fleet."
}

variable "root_volume_gib" {
  type = number
}

variable "kms_key_id" {
  type        = string
  default     = ""
  description = "Customer managed key for the root volume; empty means the account's default EBS key."
}

variable "ssh_username" {
  type = string
}

variable "tags" {
  type    = map(string)
  default = {}
}
