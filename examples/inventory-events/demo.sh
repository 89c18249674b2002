# Inventory events beside a scheduled forecast release (run by ./scripts/demo inventory-events).
echo "== the forecast release: polled from the planning system's export on start, then every 10 minutes"
for _ in $(seq 100); do
  got=$(curl -sS http://127.0.0.1:19001/_admin/received)
  case "$got" in *'"unique":0'*) sleep 0.1 ;; *) break ;; esac
done
echo "   planning has $(echo "$got" | grep -o '"unique":[0-9]*' | cut -d: -f2) of 1040 forecasts; the rest wait in the bulk tier (the API takes 200/s)"
echo "== the WMS pushes a goods issue, a stock-out and a goods receipt while the forecasts drain"
a=$(post wms-events messages application/vnd.acme.wms-event+json "$ex/data-in/movement.json")
b=$(post wms-events messages application/vnd.acme.wms-event+json "$ex/data-in/stock-out.json")
c=$(post wms-events messages application/vnd.acme.wms-event+json "$ex/data-in/receipt.json")
echo "   $a"; echo "   $b"; echo "   $c"
# positions: where the WMS's documents are in the planning system's inbox.
positions() { curl -sS "http://127.0.0.1:19001/_admin/received?keys=true" | grep -o '"keys":\[[^]]*\]' | tr ',' '\n' | grep -n 'wms-events' || true; }
for _ in $(seq 100); do [ "$(positions | wc -l)" -ge 3 ] && break; sleep 0.1; done
echo "== where the three events are in the planning system's inbox (of $(curl -sS http://127.0.0.1:19001/_admin/received | grep -o '"unique":[0-9]*' | cut -d: -f2) documents so far)"
positions | sed 's/^/   position /'
echo "== the sink's queue: forecasts still pending in the bulk tier"
curl -sS "$api/v1/sinks"; echo
wait_documents 1043
echo "== where the stock-out went"
traces $(ids "$b")
