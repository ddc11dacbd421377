build {
  sources = ["source.amazon-ebs.image"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/bakery-rootfs"]
  }

  # Config files the image carries, installed by the scripts below.
  provisioner "file" {
    source      = "${var.scripts_dir}/rootfs/"
    destination = "/tmp/bakery-rootfs"
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/wait-cloud-init.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
    ]
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/install-nvidia-driver.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
      "NVIDIA_DRIVER_INSTALL=${var.nvidia_driver_install}",
      "NVIDIA_DRIVER_BRANCH=${var.nvidia_driver_branch}",
      "NVIDIA_MIN_DRIVER_BRANCH=${var.nvidia_min_driver_branch}",
    ]
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/install-docker.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
    ]
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/install-ollama.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
      "OLLAMA_VERSION=${var.ollama_version}",
      "OLLAMA_SHA256=${var.ollama_sha256}",
      "OLLAMA_DOWNLOAD_URL=${var.ollama_download_url}",
      "OLLAMA_KEEP_ALIVE=${var.ollama_keep_alive}",
      "OLLAMA_WAIT_FOR_GPU=${var.gpu}",
    ]
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/pull-models.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
      "OLLAMA_PULL=${var.ollama_pull}",
      "OLLAMA_IMPORT=${var.ollama_import}",
    ]
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/pull-ui-image.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
      "UI_IMAGE=${var.ui_image}",
      "UI_GIT_URL=${var.ui_git_url}",
      "UI_GIT_COMMIT=${var.ui_git_commit}",
      "UI_ARCHIVE_URL=${var.ui_archive_url}",
      "UI_ARCHIVE_SHA256=${var.ui_archive_sha256}",
    ]
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/harden-sshd.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
    ]
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/version-info.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
      "NVIDIA_DRIVER_EXPECTED=${var.gpu}",
    ]
  }

  provisioner "file" {
    direction   = "download"
    source      = "/tmp/version-info.json"
    destination = "${path.root}/version-info.json"
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/cleanup.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
    ]
  }

  provisioner "shell" {
    script          = "${var.scripts_dir}/validate.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKERY_ROOTFS=/tmp/bakery-rootfs",
      "MIN_FREE_DISK_GIB=${var.min_free_disk_gib}",
    ]
  }

  post-processor "manifest" {
    output     = "${path.root}/packer-manifest.json"
    strip_path = true
    custom_data = {
      build_id   = var.build_id
      source_ami = var.source_ami
    }
  }
}
