# Plugins in Python, Rust and JavaScript in one pipeline (run by ./scripts/demo partner-plugins).
echo "== POST ACME's week-49 release: XML from its planning tool (mapped by its Python plugin)"
a=$(post plan-release messages application/xml "$ex/data-in/release-w49.xml" 'idempotency-key: release-2026-W49')
echo "   $a"
echo "== waiting for 3 orders at the ERP (2 purchase orders, 1 stock transport order, posted by the JavaScript connector)"
wait_documents 3
documents
echo "== the negative quantity waits for the master data team (the Rust validator)"
curl -sS "$api/v1/exceptions?queue=master-data"; echo
echo "== a release from a plant the table does not list: refused by the Python plugin, kept as a dead letter"
b=$(post plan-release messages application/xml "$ex/data-in/release-unknown-plant.xml")
echo "   $b"
echo "== a quantity the plugin cannot read: a Python exception, its traceback kept with the dead letter"
c=$(post plan-release messages application/xml "$ex/data-in/release-bad-quantity.xml")
echo "   $c"
for _ in $(seq 100); do
  dl=$(curl -sS "$api/v1/dead-letters?tenant=acme")
  case "$dl" in *unknown-plant*ValueError*|*ValueError*unknown-plant*) break ;; esac
  sleep 0.1
done
"$bin/syncline" dlq list --server "$api"
echo "== where the release went"
traces $(ids "$a")
