# The bundled example's steps (run by ./scripts/demo).
base=replenishment-release
echo "== POST the planning system's export (its own JSON format, taken as a raw payload)"
a=$(post $base messages application/vnd.acme.planning+json "$ex/data-in/planning-export.json" 'idempotency-key: export-2026-W49')
echo "   $a"
echo "== POST it again: same idempotency key, not processed twice"
echo "   $(post $base messages application/vnd.acme.planning+json "$ex/data-in/planning-export.json" 'idempotency-key: export-2026-W49')"
echo "== POST two canonical transfer recommendations as NDJSON"
b=$(post $base messages:batch application/x-ndjson "$ex/data-in/transfers.ndjson")
echo "   $b"
echo "== waiting for the ERP to receive 4 documents"
wait_documents 4
echo "== where each message went"
traces $(ids "$a $b")
