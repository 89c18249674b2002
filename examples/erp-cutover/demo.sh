# Phased ERP cutover (run by ./scripts/demo erp-cutover).
echo "== week 49, first half: DC-1 is on the cloud ERP, DC-2 and DC-3 on the legacy ERP"
a=$(post replenishment messages:batch application/x-ndjson "$ex/data-in/week-49.ndjson")
wait_documents 15
echo "== cutover: DC-2 moves to the cloud ERP (one edit of syncline.toml, picked up while running)"
applied() { curl -sS "$api/v1/reloads" | { grep -o '"outcome":"applied"' || true; } | wc -l; }
applied_before=$(applied)
cp "$ex/syncline.toml" "$logs/erp-cutover.before.toml"
"$ex/cutover.sh" "$ex/syncline.toml"
for _ in $(seq 100); do
  [ "$(applied)" -gt "$applied_before" ] && break
  sleep 0.1
done
echo "   reloads applied: $(applied)"
echo "== week 49, second half"
b=$(post replenishment messages:batch application/x-ndjson "$ex/data-in/week-49-late.ndjson")
wait_documents 30
echo "== where each requisition went"
curl -sS http://127.0.0.1:19001/_admin/received | grep -o '"by-path":{[^}]*}' | sed 's/^/   /'
# The example's config as it was, for the next run.
cp "$logs/erp-cutover.before.toml" "$ex/syncline.toml"
