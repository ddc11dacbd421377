# Rendered from images/deepseek-r1-7b.toml; edit the definition, not this file.
image_name      = "deepseek-r1-7b"
instance_types  = ["c6i.xlarge", "c5.xlarge", "m6i.xlarge", "m5.xlarge"]
root_volume_gib = 100
kms_key_id      = ""
ssh_username    = "ubuntu"
tags = {
  "Project" = "private-llm"
}
