#!/bin/sh
# Builds acme-xml-mapper.wasm from app.py with componentize-py (pip install -r requirements.txt).
set -e
cd "$(dirname "$0")"
componentize-py -d "${SYNCLINE_WIT:-wit}" -w transformer \
  --import-interface-name syncline:canonical/types@1.1.0=canonical \
  componentize app -o "${OUT:-acme-xml-mapper.wasm}"
