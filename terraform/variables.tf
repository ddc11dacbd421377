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
  description = "IPv4 CIDR blocks allowed to reach the UI on ui_port. Empty (the default) opens nothing: reach the UI through Session Manager port forwarding (AWS-StartPortForwardingSession). The UI has no authentication and can make Ollama pull models, so 0.0.0.0/0 is refused: put sign-in in front instead (create_load_balancer)."
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
  description = "Number of instances to run, between min_size and max_size. 0 keeps the group (and its launch template) ready without paying for GPUs. null leaves it to the group: it starts at min_size and the scaling policy moves it (see target_requests_per_instance), and no apply resets it."
  type        = number
  default     = 1

  validation {
    condition     = var.desired_capacity == null || try(var.desired_capacity >= 0 && var.desired_capacity == floor(var.desired_capacity), false)
    error_message = "desired_capacity must be a whole number, 0 or more, or null."
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

################################################################################
# Load balancer (optional): one HTTPS address with sign-in in front of the fleet
################################################################################

variable "create_load_balancer" {
  description = "Put an Application Load Balancer in front of the fleet: HTTPS on 443 with load_balancer_certificate_arn (HTTP on 80 redirects), sign-in through oidc or cognito, then the UI. The instances then accept ui_port from the load balancer's security group, a launch lifecycle hook keeps each new instance out of service until its models are loaded and the UI answers, and the group scales on requests per instance. false (the default) creates none of it."
  type        = bool
  default     = false
}

variable "load_balancer_certificate_arn" {
  description = "ARN of the ACM certificate the HTTPS listener presents, in the fleet's region. Required with create_load_balancer. Point a DNS name the certificate covers at load_balancer_dns_name (a CNAME or an alias record)."
  type        = string
  default     = null

  validation {
    condition     = var.load_balancer_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.load_balancer_certificate_arn))
    error_message = "load_balancer_certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "load_balancer_subnet_ids" {
  description = "Subnets of the load balancer, in at least two Availability Zones of vpc_id (public subnets for an internet-facing one). null uses subnet_ids."
  type        = list(string)
  default     = null

  validation {
    condition     = var.load_balancer_subnet_ids == null || try(length(var.load_balancer_subnet_ids) >= 2 && alltrue([for s in var.load_balancer_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))]), false)
    error_message = "load_balancer_subnet_ids must hold at least two subnet IDs (subnet-...), in different Availability Zones."
  }
}

variable "load_balancer_internal" {
  description = "Make the load balancer internal (reachable from inside the VPC and what is peered or connected to it) instead of internet-facing."
  type        = bool
  default     = false
}

variable "load_balancer_ingress_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the load balancer on 443 (and 80, which only redirects). Everyone must still sign in (oidc or cognito); narrow it to your networks to keep the sign-in page itself private."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.load_balancer_ingress_cidrs) >= 1 && alltrue([for c in var.load_balancer_ingress_cidrs : can(cidrnetmask(c))])
    error_message = "load_balancer_ingress_cidrs must hold at least one IPv4 CIDR block such as 203.0.113.0/24."
  }
}

variable "load_balancer_ssl_policy" {
  description = "Security policy of the HTTPS listener (the TLS versions and ciphers it accepts)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = can(regex("^ELBSecurityPolicy-", var.load_balancer_ssl_policy))
    error_message = "load_balancer_ssl_policy must be an ELB security policy name (ELBSecurityPolicy-...)."
  }
}

variable "load_balancer_idle_timeout" {
  description = "Seconds a connection through the load balancer may stay silent before it is closed. A chat answer streams, but a request queued behind another generation (Ollama answers one at a time by default) sends nothing until its turn."
  type        = number
  default     = 600

  validation {
    condition     = var.load_balancer_idle_timeout >= 1 && var.load_balancer_idle_timeout <= 4000 && var.load_balancer_idle_timeout == floor(var.load_balancer_idle_timeout)
    error_message = "load_balancer_idle_timeout must be a whole number of seconds from 1 to 4000."
  }
}

variable "load_balancer_access_logs_bucket" {
  description = "Name of an S3 bucket (with a policy that lets Elastic Load Balancing write to it) for the load balancer's access logs. null (the default) writes none: the module creates no bucket."
  type        = string
  default     = null

  validation {
    condition     = var.load_balancer_access_logs_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.load_balancer_access_logs_bucket))
    error_message = "load_balancer_access_logs_bucket must be an S3 bucket name."
  }
}

variable "deregistration_delay" {
  description = "Seconds the load balancer keeps serving the requests in flight on an instance that leaves it (scale-in, a spot interruption notice) before it cuts them. A streaming generation is one such request: give it the time a long answer takes. The instance is terminated after it, so a longer delay costs only when a request is still running (spot interruption gives two minutes whatever this says)."
  type        = number
  default     = 300

  validation {
    condition     = var.deregistration_delay >= 0 && var.deregistration_delay <= 3600 && var.deregistration_delay == floor(var.deregistration_delay)
    error_message = "deregistration_delay must be a whole number of seconds from 0 to 3600."
  }
}

variable "oidc" {
  description = "Sign-in through an OpenID Connect provider (authenticate-oidc): issuer, client_id and the authorization, token and user info endpoints from the provider's /.well-known/openid-configuration (invoke launch reads them from there), and client_secret_ssm_parameter, the NAME of a SecureString SSM parameter holding the client secret (or /aws/reference/secretsmanager/SECRET_NAME for a Secrets Manager secret). The secret is read by a data source at plan time, so it is in the Terraform state, as in any listener that uses it: keep the state private. The provider must allow https://<your DNS name>/oauth2/idpresponse as a redirect URI."
  type = object({
    issuer                      = string
    client_id                   = string
    client_secret_ssm_parameter = string
    authorization_endpoint      = string
    token_endpoint              = string
    user_info_endpoint          = string
    scope                       = optional(string, "openid email")
    session_timeout             = optional(number, 43200)
  })
  default = null

  validation {
    condition     = var.oidc == null || try(alltrue([for u in [var.oidc.issuer, var.oidc.authorization_endpoint, var.oidc.token_endpoint, var.oidc.user_info_endpoint] : can(regex("^https://[^/ ]+", u))]), false)
    error_message = "oidc: issuer, authorization_endpoint, token_endpoint and user_info_endpoint must be https:// URLs."
  }

  validation {
    condition     = var.oidc == null || try(can(regex("^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.oidc.client_secret_ssm_parameter)), false)
    error_message = "oidc.client_secret_ssm_parameter must be an SSM parameter name (the secret's name, never the secret itself)."
  }

  validation {
    condition     = var.oidc == null || try(var.oidc.session_timeout >= 1 && var.oidc.session_timeout <= 604800, false)
    error_message = "oidc.session_timeout must be from 1 to 604800 seconds (7 days)."
  }
}

variable "cognito" {
  description = "Sign-in through an Amazon Cognito user pool (authenticate-cognito) instead of oidc: the user pool's ARN, an app client ID (with a client secret, the authorization code grant and https://<your DNS name>/oauth2/idpresponse as a callback URL) and the user pool's domain prefix."
  type = object({
    user_pool_arn       = string
    user_pool_client_id = string
    user_pool_domain    = string
    scope               = optional(string, "openid email")
    session_timeout     = optional(number, 43200)
  })
  default = null

  validation {
    condition     = var.cognito == null || try(can(regex("^arn:aws[a-z-]*:cognito-idp:", var.cognito.user_pool_arn)), false)
    error_message = "cognito.user_pool_arn must be a Cognito user pool ARN (arn:aws:cognito-idp:...)."
  }
}

variable "allow_model_pulls" {
  description = "Let requests through the load balancer reach the UI's /api/model route, which makes Ollama download any model it is asked for (filling the disk, from any registry). false (the default) answers 403 for it at the load balancer."
  type        = bool
  default     = false
}

variable "lifecycle_hook_heartbeat_timeout" {
  description = "With create_load_balancer: seconds a new instance may take from launch to loaded models and an answering UI. Its user-data completes the launch lifecycle action then; an instance that has not by this time is abandoned (terminated and replaced) and never takes traffic. Cover the first model load from a lazily initialized volume (see volume_initialization_rate)."
  type        = number
  default     = 1800

  validation {
    condition     = var.lifecycle_hook_heartbeat_timeout >= 30 && var.lifecycle_hook_heartbeat_timeout <= 7200 && var.lifecycle_hook_heartbeat_timeout == floor(var.lifecycle_hook_heartbeat_timeout)
    error_message = "lifecycle_hook_heartbeat_timeout must be a whole number of seconds from 30 to 7200."
  }
}

variable "target_requests_per_instance" {
  description = "With create_load_balancer and max_size above min_size: the target tracking policy keeps the load balancer's requests per instance per minute (ALBRequestCountPerTarget) near this, between min_size and max_size. Every request counts, page loads too, not only chat messages (each is one /api/chat request), so set it from what one instance serves."
  type        = number
  default     = 10

  validation {
    condition     = var.target_requests_per_instance > 0
    error_message = "target_requests_per_instance must be more than 0."
  }
}
