#!/bin/sh
# gpudesk SSH flavour: key-only sshd for one non-root user.
set -eu
. /usr/local/lib/gpudesk/common.sh

gpudesk_setup_user
gpudesk_setup_venv
gpudesk_write_env

keys=${GPUDESK_AUTHORIZED_KEYS:-}
if [ -z "$keys" ] && [ -r /run/gpudesk/authorized_keys ]; then
    keys=$(cat /run/gpudesk/authorized_keys)
fi
[ -n "$keys" ] || gpudesk_die "no public key given: set GPUDESK_AUTHORIZED_KEYS or mount /run/gpudesk/authorized_keys"
install -d -m 0700 -o "$GPUDESK_USER" -g "$(id -g "$GPUDESK_USER")" "$GPUDESK_HOME_DIR/.ssh"
printf '%s\n' "$keys" > "$GPUDESK_HOME_DIR/.ssh/authorized_keys"
chown "$GPUDESK_USER": "$GPUDESK_HOME_DIR/.ssh/authorized_keys"
chmod 0600 "$GPUDESK_HOME_DIR/.ssh/authorized_keys"
unset GPUDESK_AUTHORIZED_KEYS

cat > /etc/ssh/sshd_config.d/gpudesk.conf <<CONF
# Written by gpudesk at container start.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $GPUDESK_USER
CONF
# Host networking (gpudesk launch --network host): the host's port 22 is the host's own sshd,
# so this one listens on the free loopback port gpudesk picked.
if [ -n "${GPUDESK_LISTEN_PORT:-}" ]; then
    echo "ListenAddress 127.0.0.1:$GPUDESK_LISTEN_PORT" >> /etc/ssh/sshd_config.d/gpudesk.conf
fi

# Keys are made on the first start of each container and kept across its restarts.
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
chmod 0755 /run/sshd
/usr/sbin/sshd -t
exec /usr/sbin/sshd -D -e
