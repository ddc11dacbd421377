build {
  sources = ["source.amazon-ebs.image"]

  post-processor "manifest" {
    output     = "${path.root}/packer-manifest.json"
    strip_path = true
    custom_data = {
      build_id   = var.build_id
      source_ami = var.source_ami
    }
  }
}
