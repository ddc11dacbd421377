# shellcheck shell=bash
# Sourced by every job that runs the tool (before_script): puts its toolchain on PATH.
#
# In the job image (ci/image/Dockerfile) everything is already installed and nothing is
# downloaded; the checkout's src/ goes on PYTHONPATH. Anywhere else, for example
# gitlab-ci-local's shell executor on a workstation, ./.ci/setup installs what is missing
# (idempotent, and quick when everything is there) and its .venv and .tools go on PATH.
if [ -x /opt/bakery/venv/bin/python ]; then
  export PATH="/opt/bakery/venv/bin:$PATH"
else
  ./.ci/setup
  export PATH="$PWD/.venv/bin:$PWD/.tools/checkov/bin:$PWD/.tools/node_modules/.bin:$PATH"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
