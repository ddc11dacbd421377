################################################################################
# Naming and tags
################################################################################

variable "name" {
  description = "Name of the fleet: the Auto Scaling group, launch template and security group are named after it, the IAM role and instance profile use it as a prefix. At most 32 characters: letters, digits and hyphens."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9-]{0,31}$", var.name))
    error_message = "name must start with a letter and hold at most 32 letters, digits and hyphens (the IAM role uses it as a name prefix, which IAM limits to 38 characters)."
  }
}

variable "tags" {
  description = "Tags for every resource the module creates, and for the instances, volumes and network interfaces the group launches. The module adds bakery:managed-by and bakery:image; those two keys cannot be overridden."
  type        = map(string)
  default     = {}
}

################################################################################
# Image
################################################################################

variable "image_name" {
  description = "Name of the baked image: its definition's file name under images/ without .toml (e.g. \"deepseek-r1-7b\"). Selects the AMI by its bakery:image tag unless ami_ssm_parameter is set, and tags every resource."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]*$", var.image_name))
    error_message = "image_name must be the name of an image definition: lowercase letters, digits, dots, underscores and hyphens."
  }
}

variable "ami_ssm_parameter" {
  description = "Name of an SSM parameter (data type aws:ec2:image) holding the AMI ID, as `invoke publish` writes it in every region (distribute.ssm_parameter of the image definition), e.g. \"/bakery/deepseek-r1-7b/ami-id\". Use it when the AMI was shared from another account. null looks the AMI up in this account's catalog instead: the most recent AMI owned by this account tagged bakery:image = image_name."
  type        = string
  default     = null

  validation {
    condition     = var.ami_ssm_parameter == null || can(regex("^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.ami_ssm_parameter))
    error_message = "ami_ssm_parameter must be an SSM parameter name such as /bakery/deepseek-r1-7b/ami-id."
  }
}

variable "require_verified" {
  description = "When looking the AMI up in the catalog, only consider AMIs tagged bakery:verification = passed (set when the AMI passed verification on a GPU instance). Does not apply to ami_ssm_parameter, which names the AMI itself: `invoke publish` only publishes verified AMIs, and tags do not cross accounts."
  type        = bool
  default     = true
}

variable "models" {
  description = "Ollama models to load into GPU memory at boot (keep_alive -1), e.g. [\"deepseek-r1:7b\"]. They must already be in the AMI: nothing is pulled at boot. null takes them from the AMI's bakery:models tag; set it when the AMI was shared from another account (tags do not cross accounts). [] loads none (the first request then waits for the load)."
  type        = list(string)
  default     = null

  validation {
    condition     = alltrue([for m in coalesce(var.models, []) : can(regex("^[A-Za-z0-9][A-Za-z0-9._:/-]*$", m))])
    error_message = "models must be Ollama model names such as \"deepseek-r1:7b\" (letters, digits, . _ : / -)."
  }
}

################################################################################
# Network
################################################################################

variable "vpc_id" {
  description = "ID of the VPC the security group is created in; subnet_ids must belong to it."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC ID (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "Subnets to launch into, ideally one per Availability Zone so spot capacity can be found in more pools. The instances need a route to the SSM endpoints (NAT, VPC endpoints, or a public IP)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must hold at least one subnet ID (subnet-...)."
  }
}

variable "ui_port" {
  description = "Port the UI container listens on (its PORT variable). Only this port can be opened, through ui_ingress_cidrs; Ollama's port 11434 never is."
  type        = number
  default     = 3000

  validation {
    condition     = var.ui_port == floor(var.ui_port) && var.ui_port >= 1 && var.ui_port <= 65535 && var.ui_port != 11434
    error_message = "ui_port must be a port number (1-65535) other than 11434, which is Ollama's: Ollama listens on 127.0.0.1 only and must stay unreachable from the network."
  }
}

variable "ui_ingress_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the UI on ui_port. Empty (the default) opens nothing: reach the UI through Session Manager port forwarding (AWS-StartPortForwardingSession). The UI has no authentication and can make Ollama pull models, so 0.0.0.0/0 is refused: put an authenticating proxy in front instead (see additional_security_group_ids)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ui_ingress_cidrs : can(cidrnetmask(c)) && !endswith(c, "/0")])
    error_message = "ui_ingress_cidrs must be IPv4 CIDR blocks such as 203.0.113.0/24, and none may be a /0: the UI has no authentication."
  }
}

variable "ui_public_ingress" {
  description = "Also open ui_port to the whole IPv4 internet (0.0.0.0/0), which ui_ingress_cidrs refuses. The UI has no authentication and can make Ollama pull models: anyone who finds the address can use the GPUs and fill the disk. false (the default) opens nothing beyond ui_ingress_cidrs; `invoke launch --allow-cidr 0.0.0.0/0 --yes-public` sets it."
  type        = bool
  default     = false
}

variable "additional_security_group_ids" {
  description = "Security groups to attach to the instances besides the one the module creates, e.g. one that lets an authenticating load balancer reach ui_port."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for g in var.additional_security_group_ids : can(regex("^sg-[0-9a-f]+$", g))])
    error_message = "additional_security_group_ids must be security group IDs (sg-...)."
  }
}

################################################################################
# Capacity
################################################################################

variable "instance_types" {
  description = "GPU instance types the group may launch; each needs an NVIDIA GPU with enough memory for the models, and the AMI's architecture. At least two: every type is another spot capacity pool. Their order matters only to capacity-optimized-prioritized and to on-demand instances (first is preferred)."
  type        = list(string)
  default     = ["g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6e.xlarge"]

  validation {
    condition     = length(distinct(var.instance_types)) >= 2 && length(distinct(var.instance_types)) == length(var.instance_types)
    error_message = "instance_types must hold at least two distinct instance types: a single type is a single spot pool, and gets interrupted or starved together."
  }

  validation {
    condition     = alltrue([for t in var.instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "instance_types must be instance type names such as g5.xlarge."
  }
}

variable "spot_allocation_strategy" {
  description = "How the group picks spot pools. price-capacity-optimized (the AWS recommendation) prefers the pools least likely to be interrupted, then the cheapest of those; capacity-optimized-prioritized follows the order of instance_types where capacity allows."
  type        = string
  default     = "price-capacity-optimized"

  validation {
    condition     = contains(["price-capacity-optimized", "capacity-optimized", "capacity-optimized-prioritized", "lowest-price"], var.spot_allocation_strategy)
    error_message = "spot_allocation_strategy must be one of price-capacity-optimized, capacity-optimized, capacity-optimized-prioritized, lowest-price."
  }
}

variable "on_demand_base_capacity" {
  description = "Instances to run on demand before any spot instance is launched. 0 (the default) runs the whole fleet on spot."
  type        = number
  default     = 0

  validation {
    condition     = var.on_demand_base_capacity >= 0 && var.on_demand_base_capacity == floor(var.on_demand_base_capacity)
    error_message = "on_demand_base_capacity must be a whole number, 0 or more."
  }
}

variable "on_demand_percentage_above_base_capacity" {
  description = "Percentage of the instances above on_demand_base_capacity that run on demand. 0 (the default) makes them all spot."
  type        = number
  default     = 0

  validation {
    condition     = var.on_demand_percentage_above_base_capacity >= 0 && var.on_demand_percentage_above_base_capacity <= 100 && var.on_demand_percentage_above_base_capacity == floor(var.on_demand_percentage_above_base_capacity)
    error_message = "on_demand_percentage_above_base_capacity must be a whole number from 0 to 100."
  }
}

variable "min_size" {
  description = "Minimum number of instances in the group."
  type        = number
  default     = 0

  validation {
    condition     = var.min_size >= 0 && var.min_size == floor(var.min_size)
    error_message = "min_size must be a whole number, 0 or more."
  }
}

variable "max_size" {
  description = "Maximum number of instances in the group; must be at least min_size and desired_capacity."
  type        = number
  default     = 1

  validation {
    condition     = var.max_size >= 0 && var.max_size == floor(var.max_size)
    error_message = "max_size must be a whole number, 0 or more."
  }
}

variable "desired_capacity" {
  description = "Number of instances to run, between min_size and max_size. 0 keeps the group (and its launch template) ready without paying for GPUs."
  type        = number
  default     = 1

  validation {
    condition     = var.desired_capacity >= 0 && var.desired_capacity == floor(var.desired_capacity)
    error_message = "desired_capacity must be a whole number, 0 or more."
  }
}

variable "wait_for_capacity_timeout" {
  description = "How long `terraform apply` waits for desired_capacity healthy instances (a duration such as \"10m\"); \"0\" (the default) does not wait. Spot GPU capacity can take longer than any sensible timeout, and a timed-out wait fails the apply; each instance reports its own readiness instead (journal tag bakery, /run/bakery/ready)."
  type        = string
  default     = "0"

  validation {
    condition     = can(regex("^(0|([0-9]+h)?([0-9]+m)?([0-9]+s)?)$", var.wait_for_capacity_timeout)) && var.wait_for_capacity_timeout != ""
    error_message = "wait_for_capacity_timeout must be \"0\" or a duration such as \"10m\" or \"1h30m\"."
  }
}

################################################################################
# Root volume
################################################################################

variable "root_volume_size" {
  description = "Size of the root volume in GiB. null keeps the size of the AMI's root snapshot; a larger value leaves room for more models (the file system still has to be grown to use it)."
  type        = number
  default     = null

  validation {
    condition     = var.root_volume_size == null || try(var.root_volume_size >= 8 && var.root_volume_size <= 16384 && var.root_volume_size == floor(var.root_volume_size), false)
    error_message = "root_volume_size must be a whole number of GiB from 8 to 16384, or null."
  }
}

variable "root_volume_iops" {
  description = "Provisioned IOPS of the gp3 root volume. 3000 is included in the gp3 price; more is billed."
  type        = number
  default     = 3000

  validation {
    condition     = var.root_volume_iops >= 3000 && var.root_volume_iops <= 80000 && var.root_volume_iops == floor(var.root_volume_iops)
    error_message = "root_volume_iops must be a whole number from 3000 to 80000 (gp3)."
  }
}

variable "root_volume_throughput" {
  description = "Provisioned throughput of the gp3 root volume in MiB/s. 125 is included in the gp3 price; more is billed. Loading a model reads its whole blob (about 4.7 GB for deepseek-r1:7b), so a higher value shortens loads once the volume is initialized."
  type        = number
  default     = 125

  validation {
    condition     = var.root_volume_throughput >= 125 && var.root_volume_throughput <= 2000 && var.root_volume_throughput == floor(var.root_volume_throughput)
    error_message = "root_volume_throughput must be a whole number of MiB/s from 125 to 2000 (gp3)."
  }
}

variable "kms_key_id" {
  description = "ARN of the KMS key that encrypts the root volume. null uses the account's default EBS key for the region (aws/ebs unless changed). A customer managed key must let the Auto Scaling service-linked role (AWSServiceRoleForAutoScaling) use it, or launches fail."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_id == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_id))
    error_message = "kms_key_id must be a KMS key or alias ARN (arn:aws:kms:...)."
  }
}

variable "volume_initialization_rate" {
  description = "Provisioned rate for volume initialization, in MiB/s (100-300), or null (the default). A volume made from a snapshot loads its blocks lazily from S3: each first read of a block is slow, so the first model load can take many minutes. With a rate, EBS initializes the whole volume at that speed and predictably (e.g. 100 GiB in about 6 minutes at 300 MiB/s), at an extra charge for every volume created (see EBS pricing). With null, boot reads the model blobs once in parallel instead, which warms the blocks that matter at no extra cost but less predictably. Fast snapshot restore is the other remedy, billed per snapshot and Availability Zone hour, and managed outside this module."
  type        = number
  default     = null

  validation {
    condition     = var.volume_initialization_rate == null || try(var.volume_initialization_rate >= 100 && var.volume_initialization_rate <= 300 && var.volume_initialization_rate == floor(var.volume_initialization_rate), false)
    error_message = "volume_initialization_rate must be a whole number of MiB/s from 100 to 300, or null."
  }
}

################################################################################
# Instance role and UI
################################################################################

variable "iam_role_additional_policies" {
  description = "Additional IAM policy ARNs to attach to the instance role, keyed by a name of your choice (e.g. { cloudwatch = \"arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy\" }). AmazonSSMManagedInstanceCore is always attached."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.iam_role_additional_policies) : can(regex("^arn:aws[a-z-]*:iam::", arn))])
    error_message = "iam_role_additional_policies values must be IAM policy ARNs."
  }
}

variable "iam_role_permissions_boundary" {
  description = "ARN of the managed policy to set as the instance role's permissions boundary, where the organization requires one; null sets none."
  type        = string
  default     = null

  validation {
    condition     = var.iam_role_permissions_boundary == null || can(regex("^arn:aws[a-z-]*:iam::", var.iam_role_permissions_boundary))
    error_message = "iam_role_permissions_boundary must be an IAM policy ARN."
  }
}

variable "ui_ollama_url_env" {
  description = "Name of the environment variable through which the UI container reads Ollama's address. OLLAMA_URL for current nextjs-ollama-llm-ui builds; releases up to v1.2.0 read NEXT_PUBLIC_OLLAMA_URL."
  type        = string
  default     = "OLLAMA_URL"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.ui_ollama_url_env))
    error_message = "ui_ollama_url_env must be an environment variable name (letters, digits, underscores, not starting with a digit)."
  }
}
