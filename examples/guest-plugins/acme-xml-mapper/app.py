"""acme-xml-mapper: ACME's planning tool releases its proposals as XML; this
Python plugin maps them to canonical replenishment recommendations.

    <PlanRelease system="ACME-APO">
      <Proposal id="P-1" prio="2">
        <Material>100</Material> <Plant>1000</Plant> <Qty unit="ST">120,5</Qty>
        <Delivery>21.12.2026</Delivery> <Vendor>SUP-7</Vendor> <Reason>below safety stock</Reason>
      </Proposal>
    </PlanRelease>

- Material numbers become item ids with the `item-prefix` config (`SKU-`).
- Plants become location ids through the `plants` reference table
  (`plant,location`); a proposal from a plant it does not list fails the
  document (`unknown-plant`), so nothing half-mapped goes on.
- `<FromPlant>` instead of `<Vendor>` makes a transfer from that plant.
- Unit codes are translated by the `units` config (`ST = "EA"`), quantities
  may use a decimal comma, dates are `DD.MM.YYYY`.

Build: ./build.sh        Test: syncline test acme-xml-mapper.wasm --cases cases
"""
import copy
import xml.etree.ElementTree as ET

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import canonical, config, log, reference
from wit_world.imports.log import Level
from wit_world.imports.plugin_types import PluginError


def refuse(code: str, message: str) -> Err:
    return Err(PluginError(code=code, message=message, retryable=False))


def text(node: ET.Element, tag: str, pid: str) -> str:
    found = node.find(tag)
    if found is None or not (found.text or "").strip():
        raise refuse("missing-field", f"proposal {pid} has no <{tag}>")
    return found.text.strip()


def iso_date(value: str, pid: str) -> str:
    day, month, year = (value.split(".") + ["", "", ""])[:3]
    if not (day.isdigit() and month.isdigit() and len(year) == 4 and year.isdigit()):
        raise refuse("bad-date", f"proposal {pid}: `{value}` is not DD.MM.YYYY")
    return f"{year}-{int(month):02d}-{int(day):02d}"


def location(plant: str, pid: str) -> str:
    try:
        row = reference.get("plants", plant)
    except Err as e:  # the table is not attached to the stage
        raise refuse("no-plants-table", str(e.value))
    if row is None:
        raise refuse("unknown-plant", f"proposal {pid}: plant {plant} is not in the plants table")
    return dict(row)["location"]


def recommendation(node: ET.Element, units: dict[str, str], prefix: str) -> canonical.ReplenishmentRecommendation:
    pid = node.get("id") or "?"
    qty = node.find("Qty")
    if qty is None:
        raise refuse("missing-field", f"proposal {pid} has no <Qty>")
    unit = qty.get("unit", "EA")
    vendor, from_plant = node.find("Vendor"), node.find("FromPlant")
    if vendor is not None:
        source = canonical.SourceRef_Supplier(vendor.text.strip())
    elif from_plant is not None:
        source = canonical.SourceRef_Location(location(from_plant.text.strip(), pid))
    else:
        raise refuse("missing-field", f"proposal {pid} has neither <Vendor> nor <FromPlant>")
    return canonical.ReplenishmentRecommendation(
        id=pid,
        item=prefix + text(node, "Material", pid),
        location=location(text(node, "Plant", pid), pid),
        # A decimal comma is the planning tool's locale; anything else is a bug worth seeing.
        quantity=float(qty.text.strip().replace(",", ".")),
        uom=units.get(unit, unit),
        need_by=iso_date(text(node, "Delivery", pid), pid),
        source=source,
        reason=(node.findtext("Reason") or "").strip(),
        priority=int(node.get("prio", "3")),
        extensions=[canonical.Extension(key="planning-system", value=node.get("system", ""))],
    )


class Transform(exports.Transform):
    def transform(self, msg: canonical.Message) -> list[canonical.Message]:
        if not isinstance(msg.body, canonical.Body_Raw):
            return [msg]  # already canonical: pass it on
        try:
            root = ET.fromstring(msg.body.value.data)
        except ET.ParseError as e:
            raise refuse("bad-xml", f"the release is not well-formed XML: {e}")
        if root.tag != "PlanRelease":
            raise refuse("bad-xml", f"expected <PlanRelease>, found <{root.tag}>")
        units = {k.removeprefix("units."): v for k, v in config.entries() if k.startswith("units.")}
        prefix = config.get("item-prefix") or ""
        out = []
        for node in root.findall("Proposal"):
            node.set("system", root.get("system", ""))
            rec = recommendation(node, units, prefix)
            m = copy.copy(msg)
            m.source_system = root.get("system", msg.source_system)
            m.headers = msg.headers + [canonical.Header(key="mapped-by", value="acme-xml-mapper")]
            m.body = canonical.Body_ReplenishmentRecommendation(rec)
            out.append(m)
        log.log(Level.INFO, f"{len(out)} proposals from {root.get('system', '?')}")
        return out
