# Two planning engines reconciled (run by ./scripts/demo planning-engines).
echo "== the retail engine and the B2B engine release within the same half second"
a=$(post recommendations messages:batch application/x-ndjson "$ex/data-in/retail-engine.ndjson")
b=$(post recommendations messages:batch application/x-ndjson "$ex/data-in/b2b-engine.ndjson")
echo "   retail: $a"
echo "   b2b:    $b"
echo "== waiting for 3 documents: 2 purchase orders (ERP JSON), 1 transfer import (WMS CSV)"
wait_documents 3
documents
echo "== the reconciliation queue: B2B's SKU-100 at DC-1 waits, with the reason"
curl -sS "$api/v1/exceptions?queue=reconciliation"; echo
echo "== the decisions in the audit log"
curl -sS "$api/v1/audit?kind=decision"; echo
echo "== where each message went"
traces $(ids "$a $b")
