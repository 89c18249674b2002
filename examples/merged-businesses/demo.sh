# Post-merger harmonisation (run by ./scripts/demo merged-businesses).
echo "== Nordic's stock report (JSON, its own codes) and Southern's (CSV, its own codes)"
a=$(post nordic-stock messages application/vnd.nordic.stock+json "$ex/data-in/nordic-stock.json" 'idempotency-key: nordic-2026-11-30')
b=$(post southern-stock messages text/csv "$ex/data-in/southern-stock.csv" 'idempotency-key: southern-2026-11-30')
echo "   nordic: $a"
echo "   southern: $b"
echo "== waiting for 4 positions in the one replenishment view"
wait_documents 4
echo "== an item Southern's table has no group id for waits for master data"
curl -sS "$api/v1/exceptions?queue=master-data" | grep -o '"text":"[^"]*"' | sed 's/^/   /'
echo "== where each report went"
traces $(ids "$a $b")
