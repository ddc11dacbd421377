"""The invoke tasks: each a few lines that call the modules of the package."""

from invoke import Collection

from . import images

namespace = Collection()
namespace.add_task(images.render_, name="render")
namespace.add_task(images.bake)
