#!/usr/bin/env bash
# Moves DC-2 from the legacy ERP to the cloud ERP in CONFIG (default: this
# folder's syncline.toml), writing the new file beside it and renaming it
# over the old one, so a running host reloads it whole.
set -euo pipefail
config="${1:-$(dirname "$0")/syncline.toml}"
sed -e 's/only = { "body.location" = \["DC-1"\] }/only = { "body.location" = ["DC-1", "DC-2"] }/' \
    -e 's/only = { "body.location" = \["DC-2", "DC-3"\] }/only = { "body.location" = ["DC-3"] }/' "$config" > "$config.next"
grep -q '"DC-1", "DC-2"' "$config.next" || { echo "cutover: the config does not have the expected site lists" >&2; rm -f "$config.next"; exit 1; }
mv "$config.next" "$config"
