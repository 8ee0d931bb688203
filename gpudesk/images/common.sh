# Shared start-up steps of the gpudesk entrypoints; sourced, runs as root.
# shellcheck shell=sh

gpudesk_die() {
    echo "gpudesk: $*" >&2
    exit 1
}

# Creates or adapts the login user. Its uid follows the owner of the bind-mounted /workspace so
# files written inside the container belong to the operator's account on the host (a
# root-owned /workspace gets uid 1000, and stays root's).
gpudesk_setup_user() {
    user=${GPUDESK_USER:-dev}
    case $user in
        root) gpudesk_die "GPUDESK_USER must not be root" ;;
        [a-z_]*) ;;
        *) gpudesk_die "GPUDESK_USER '$user' is not a valid user name" ;;
    esac
    case $user in
        *[!a-z0-9_-]*) gpudesk_die "GPUDESK_USER '$user' is not a valid user name" ;;
    esac
    mkdir -p /workspace
    ws_uid=$(stat -c %u /workspace)
    uid=${GPUDESK_UID:-}
    if [ -z "$uid" ]; then
        if [ "$ws_uid" != 0 ]; then uid=$ws_uid; else uid=1000; fi
    fi
    other=$(getent passwd "$uid" | cut -d: -f1)
    case $uid in *[!0-9]*|'') gpudesk_die "the workspace owner's uid '$uid' is not a number" ;; esac
    if [ -n "$other" ] && [ "$other" != "$user" ] && [ "$uid" -ge 1000 ] && [ "$uid" -lt 60000 ]; then
        # The base already has a person's account with the workspace owner's uid (e.g.
        # Ubuntu's "ubuntu" at 1000): it becomes the login user, so the workspace stays
        # writable. System accounts (below 1000, nobody) are never taken over.
        if id -u "$user" >/dev/null 2>&1; then userdel -r "$user" 2>/dev/null || userdel "$user"; fi
        usermod -l "$user" -d "/home/$user" -m -s /bin/bash "$other"
        if [ "$(id -gn "$user")" = "$other" ] && ! getent group "$user" >/dev/null; then
            groupmod -n "$user" "$other"
        fi
    elif id -u "$user" >/dev/null 2>&1; then
        if [ "$(id -u "$user")" != "$uid" ] && [ -z "$other" ]; then
            usermod -u "$uid" "$user"
        fi
    elif [ -n "$other" ]; then
        useradd -m -s /bin/bash "$user"
    else
        useradd -m -u "$uid" -s /bin/bash "$user"
    fi
    # '*' rather than the locked '!': sshd refuses key logins to locked accounts without PAM.
    usermod -p '*' "$user"
    home=$(getent passwd "$user" | cut -d: -f6)
    # /workspace is never chowned here: it is a host folder, and handing a root-owned one to
    # this uid would give it to whichever host account has that uid. gpudesk creates the
    # workspaces it makes with the container user as owner from the start (on the host).
    if ! runuser -u "$user" -- test -w /workspace; then
        echo "gpudesk: /workspace (owner uid $ws_uid) is not writable by $user" >&2
    fi
    if [ "${GPUDESK_SUDO:-0}" = 1 ]; then
        echo "$user ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/gpudesk
        chmod 0440 /etc/sudoers.d/gpudesk
    else
        rm -f /etc/sudoers.d/gpudesk
    fi
    export GPUDESK_USER=$user GPUDESK_HOME_DIR=$home
}

# The user's own Python environment: a venv in the workspace (so it survives `gpudesk rm` and
# image rebuilds) that sees the image's packages (torch) through system site packages. pip
# installs land there; the image's environment stays as built.
gpudesk_setup_venv() {
    venv=/workspace/.venv
    if [ ! -x "$venv/bin/python" ]; then
        base=$(readlink -f /usr/local/bin/gpudesk-python)
        if ! runuser -u "$GPUDESK_USER" -- "$base" -m venv --system-site-packages "$venv" >&2; then
            echo "gpudesk: could not create $venv; pip installs go to ~/.local" >&2
            return 0
        fi
    fi
    if ! "$venv/bin/python" -c '' 2>/dev/null; then
        echo "gpudesk: $venv does not run with this image's Python; move it away to get a new one" >&2
        return 0
    fi
    export VIRTUAL_ENV=$venv PATH="$venv/bin:$PATH"
}

# Login shells start from a clean environment, so the image's ENV (PATH with /opt/conda/bin,
# CUDA_*, NVIDIA_*, PYTHONUNBUFFERED, ...) is replayed for them; secrets are left out.
gpudesk_write_env() {
    gpudesk-python - <<'PY'
import os, shlex
skip = {"HOME", "USER", "LOGNAME", "SHELL", "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "TERM", "_",
        "GPUDESK_AUTHORIZED_KEYS", "JUPYTER_TOKEN", "GPUDESK_HOME_DIR"}
items = sorted((k, v) for k, v in os.environ.items() if k not in skip and k.isidentifier())
with open("/etc/profile.d/gpudesk-env.sh.tmp", "w") as f:
    f.write("# Written by gpudesk at container start.\n")
    for k, v in items:
        f.write(f"export {k}={shlex.quote(v)}\n")
os.chmod("/etc/profile.d/gpudesk-env.sh.tmp", 0o644)
os.replace("/etc/profile.d/gpudesk-env.sh.tmp", "/etc/profile.d/gpudesk-env.sh")
# `ssh host cmd` runs no login shell; sshd's PAM session still reads /etc/environment, which
# takes no quoting, so only plain values go there.
plain = [(k, v) for k, v in items if not any(c in v for c in '"\\$`\n')]
with open("/etc/environment", "w") as f:
    f.writelines(f'{k}="{v}"\n' for k, v in plain)
PY
}
