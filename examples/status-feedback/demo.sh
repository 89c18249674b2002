# Execution statuses back to planning (run by ./scripts/demo status-feedback).
echo "== planning releases four recommendations, each with its own correlation id"
a=$(post release messages:batch application/x-ndjson "$ex/data-in/recommendations.ndjson")
echo "   $a"
echo "== waiting for 4 orders at the ERP and 4 statuses back at planning (the status feed is polled every second)"
wait_documents 8
echo "== the closed loop: every order answered"
curl -sS "$api/v1/loops?state=closed"; echo
echo "== what planning received (its own format, correlated to the recommendation)"
for key in $(curl -sS "http://127.0.0.1:19001/_admin/received?keys=true" | grep -o '"keys":\[[^]]*\]' | grep -o '"[^"]*"' | tail -n +2 | tr -d '"'); do
  record=$(curl -sS "http://127.0.0.1:19001/_admin/record/$(printf %s "$key" | sed 's|/|%2F|g;s|:|%3A|g')")
  case "$record" in *'"/planning/order-status"'*) echo "   $record" ;; esac
done
echo "== one flow as a timeline: recommendation, requisition, its status, the status at planning"
"$bin/syncline" trace --correlation plan-2026-W49-R-2 --server "$api"
