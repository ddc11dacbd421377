"""The invoke tasks: each a few lines that call the modules of the package."""

from invoke import Collection

from . import distribute as distribute_tasks
from . import images
from . import launch as launch_tasks
from . import verify as verify_tasks

namespace = Collection()
namespace.add_task(images.render_, name="render")
namespace.add_task(images.bake)
namespace.add_task(verify_tasks.verify)
namespace.add_task(launch_tasks.launch)
namespace.add_task(launch_tasks.status)
namespace.add_task(launch_tasks.connect)
namespace.add_task(launch_tasks.destroy)
namespace.add_task(launch_tasks.cost)
namespace.add_task(distribute_tasks.publish)
namespace.add_task(distribute_tasks.share)
namespace.add_task(distribute_tasks.prune)
namespace.add_task(distribute_tasks.gc)
