#!/bin/sh
# gpudesk Jupyter flavour: JupyterLab as the non-root user, token from JUPYTER_TOKEN only.
set -eu
. /usr/local/lib/gpudesk/common.sh

# Jupyter reads JUPYTER_TOKEN itself; a token on the command line would show in `ps`.
[ -n "${JUPYTER_TOKEN:-}" ] || gpudesk_die "JUPYTER_TOKEN is not set; gpudesk always starts Jupyter with a token"

gpudesk_setup_user
gpudesk_setup_venv
gpudesk_write_env

# The venv's python runs JupyterLab (found through system site packages), so kernels and
# `%pip install` use the venv too.
py=gpudesk-python
if [ -n "${VIRTUAL_ENV:-}" ]; then py=$VIRTUAL_ENV/bin/python; fi
# Host networking (gpudesk launch --network host): only the host's loopback, on the free port
# gpudesk picked; otherwise every address of the container, published on the host's loopback.
ip=0.0.0.0 port=8888
if [ -n "${GPUDESK_LISTEN_PORT:-}" ]; then ip=127.0.0.1 port=$GPUDESK_LISTEN_PORT; fi
cd /workspace
exec runuser -u "$GPUDESK_USER" -- env HOME="$GPUDESK_HOME_DIR" PATH="$PATH" \
    ${VIRTUAL_ENV:+VIRTUAL_ENV="$VIRTUAL_ENV"} \
    "$py" -m jupyterlab --no-browser --ip="$ip" --port="$port" \
    --ServerApp.root_dir=/workspace --ServerApp.open_browser=False
