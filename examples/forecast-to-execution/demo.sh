# Forecast release to execution (run by ./scripts/demo forecast-to-execution).
echo "== POST the planning system's week-49 release: 2 purchases, 3 transfers of SKU-400 from DC-CENTRAL (150 wanted, 100 there)"
a=$(post release messages:batch application/x-ndjson "$ex/data-in/release-w49.ndjson")
echo "   $a"
echo "== waiting for 5 documents: 2 purchase orders (ERP JSON), 3 stock transfer lines (ERP CSV import)"
wait_documents 5
documents
echo "== the allocation's decisions in the audit log (each cut, with its reason)"
curl -sS "$api/v1/audit?kind=decision"; echo
echo "== where each recommendation went"
traces $(ids "$a")
