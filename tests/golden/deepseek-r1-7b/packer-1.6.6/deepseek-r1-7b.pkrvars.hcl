# Rendered from images/deepseek-r1-7b.toml; edit the definition, not this file.
image_name      = "deepseek-r1-7b"
instance_types  = ["c6i.xlarge", "c5.xlarge", "m6i.xlarge", "m5.xlarge"]
root_volume_gib = 100
kms_key_id      = ""
ssh_username    = "ubuntu"
tags = {
  "Project" = "private-llm"
}
gpu                      = true
nvidia_driver_install    = false
nvidia_driver_branch     = ""
nvidia_min_driver_branch = "580"
ollama_version           = "0.13.1"
ollama_sha256            = "4997753db0c578d24f8fc95d1538741609d72529ab6e913ecbf910ae919b0232"
ollama_download_url      = "https://github.com/ollama/ollama/releases/download/v0.13.1/ollama-linux-amd64.tgz"
ollama_keep_alive        = "-1"
ollama_pull              = "deepseek-r1:7b"
ollama_import            = ""
ui_image                 = ""
ui_git_url               = "https://github.com/jakobhoeg/nextjs-ollama-llm-ui.git"
ui_git_commit            = "99d7cc1a01d8357c48842c60ff6302d82bd2e9bb"
ui_archive_url           = ""
ui_archive_sha256        = ""
min_free_disk_gib        = 20
