# Values reach Packer as variables: definition values from deepseek-r1-7b.pkrvars.hcl,
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

variable "scripts_dir" {
  type        = string
  description = "The repository's scripts/ folder (provisioning scripts and the rootfs they install)."
}

variable "gpu" {
  type        = bool
  description = "An NVIDIA GPU image ([nvidia] in the definition); false: a CPU image."
}

variable "nvidia_driver_install" {
  type        = bool
  description = "true: install nvidia_driver_branch; false: take the base AMI's driver."
}

variable "nvidia_driver_branch" {
  type        = string
  default     = ""
  description = "The branch to install (install = true only)."
}

variable "nvidia_min_driver_branch" {
  type        = string
  default     = ""
  description = "The oldest branch of the base's driver accepted (install = false only); empty: any."
}

variable "ollama_version" {
  type = string
}

variable "ollama_sha256" {
  type        = string
  description = "sha256 of the archive at ollama_download_url, as downloaded."
}

variable "ollama_download_url" {
  type        = string
  description = "The Ollama release archive (.tgz or .tar.zst): https://, or file:// of the staged upload."
}

variable "ollama_keep_alive" {
  type = string
}

variable "ollama_pull" {
  type        = string
  description = "Space-separated models pulled from Ollama's registry."
}

variable "ollama_import" {
  type        = string
  default     = ""
  description = "Space-separated name|url|sha256 GGUF files imported with a Modelfile."
}

variable "ui_image" {
  type    = string
  default = ""
}

variable "ui_git_url" {
  type    = string
  default = ""
}

variable "ui_git_commit" {
  type    = string
  default = ""
}

variable "ui_archive_url" {
  type        = string
  default     = ""
  description = "An image archive (docker save) to docker load instead of pulling or building."
}

variable "ui_archive_sha256" {
  type    = string
  default = ""
}

variable "uploads" {
  type        = list(string)
  default     = []
  description = "The build host's files uploaded to /tmp/bakery-files (the definition's file:// URLs)."
}

variable "min_free_disk_gib" {
  type = number
}
