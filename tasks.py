"""invoke tasks of gpu-ami-bakery: `invoke --list` shows them, `invoke --help TASK` their options."""

from bakery.tasks import namespace

ns = namespace
