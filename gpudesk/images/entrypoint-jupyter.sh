#!/bin/sh
# gpudesk Jupyter flavour: JupyterLab as the non-root user, token from JUPYTER_TOKEN only.
set -eu
. /usr/local/lib/gpudesk/common.sh

# Jupyter reads JUPYTER_TOKEN itself; a token on the command line would show in `ps`.
[ -n "${JUPYTER_TOKEN:-}" ] || gpudesk_die "JUPYTER_TOKEN is not set; gpudesk always starts Jupyter with a token"

gpudesk_setup_user
gpudesk_write_env

cd /workspace
exec runuser -u "$GPUDESK_USER" -- env HOME="$GPUDESK_HOME_DIR" PATH="$PATH" \
    gpudesk-python -m jupyterlab --no-browser --ip=0.0.0.0 --port=8888 \
    --ServerApp.root_dir=/workspace --ServerApp.open_browser=False
