#!/usr/bin/env bash
# Installs the system tools the screen tests drive, from the Debian package registry:
#   - tmux (covenant watch runs in a tmux pane, read back with capture-pane), and
#   - chromium-headless-shell (headless Chromium: screenshots of covenant report's HTML and of
#     the watch screen), with fonts-dejavu-core for its text.
# Idempotent: a second run only checks them. Needs root (or sudo) the first time.
set -euo pipefail
log() { printf '[install-test-tools] %s\n' "$*" >&2; }
need=()
command -v tmux >/dev/null || need+=(tmux)
command -v chromium-headless-shell >/dev/null || need+=(chromium-headless-shell)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need+=(fonts-dejavu-core)
if [ "${#need[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "apt-get not found: install ${need[*]} with this system's package manager" >&2; exit 1; }
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "installing ${need[*]} from the Debian package registry"
  start=$(date +%s)
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
    { $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >&2; }
  log "installed in $(( $(date +%s) - start ))s"
fi
tmux -V >/dev/null
chromium-headless-shell --version >/dev/null 2>&1 || { echo "chromium-headless-shell does not run" >&2; exit 1; }
