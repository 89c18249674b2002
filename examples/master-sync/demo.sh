# Item and location master sync (run by ./scripts/demo master-sync).
echo "== the ERP's item and location exports (CSV, its own columns and codes)"
a=$(post items messages text/csv "$ex/data-in/items.csv" 'idempotency-key: items-2026-11-30')
b=$(post locations messages text/csv "$ex/data-in/locations.csv" 'idempotency-key: locations-2026-11-30')
echo "   items: $a"
echo "   locations: $b"
echo "== waiting for the 6 clean records at planning (3 items, 3 locations)"
wait_documents 6
echo "== the master-data queue: what the stewards must fix"
curl -sS "$api/v1/exceptions?queue=master-data" | grep -o '"text":"[^"]*"' | sed 's/^/   /'
echo "== where each export went"
traces $(ids "$a $b")
