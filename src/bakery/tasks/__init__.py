"""The invoke tasks: each a few lines that call the modules of the package."""

from invoke import Collection

from . import distribute as distribute_tasks
from . import images
from . import verify as verify_tasks

namespace = Collection()
namespace.add_task(images.render_, name="render")
namespace.add_task(images.bake)
namespace.add_task(verify_tasks.verify)
namespace.add_task(distribute_tasks.publish)
namespace.add_task(distribute_tasks.share)
namespace.add_task(distribute_tasks.prune)
namespace.add_task(distribute_tasks.gc)
