# Rendered from images/deepseek-r1-7b-ubuntu2404.toml; edit the definition, not this file.
image_name      = "deepseek-r1-7b-ubuntu2404"
instance_types  = ["c6i.2xlarge", "c5.2xlarge", "m6i.2xlarge"]
root_volume_gib = 80
kms_key_id      = ""
ssh_username    = "ubuntu"
tags = {
  "Project" = "private-llm"
}
