# Test root: renders the module's user-data template with sample values; no provider.

terraform {
  required_version = ">= 1.5"
}

variable "ui_port" {
  description = "Port of the UI."
  type        = number
  default     = 3000
}

variable "ui_ollama_url_env" {
  description = "Environment variable through which the UI reads Ollama's address."
  type        = string
  default     = "OLLAMA_URL"
}

variable "models" {
  description = "Models to load at boot."
  type        = list(string)
  default     = ["deepseek-r1:7b"]
}

variable "lifecycle_hook_name" {
  description = "Launch lifecycle hook the script completes; empty without a load balancer."
  type        = string
  default     = ""
}

variable "autoscaling_group_name" {
  description = "Auto Scaling group of the hook; empty without a load balancer."
  type        = string
  default     = ""
}

variable "target_group_arn" {
  description = "Target group the instance leaves at a spot interruption notice; empty without a load balancer."
  type        = string
  default     = ""
}

output "user_data" {
  description = "The rendered user-data script."
  value = templatefile("${path.module}/../../../../terraform/user-data.sh.tftpl", {
    ui_image          = "bakery/ui:baked"
    ui_port           = var.ui_port
    ui_ollama_url_env = var.ui_ollama_url_env
    models            = var.models

    lifecycle_hook_name    = var.lifecycle_hook_name
    autoscaling_group_name = var.autoscaling_group_name
    target_group_arn       = var.target_group_arn
  })
}
