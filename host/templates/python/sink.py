"""__NAME__: a Syncline sink plugin in Python; posts each message as JSON.

Config: `url` (required), `token` (a secret, sent as a bearer token).
Build: ./build.sh        Test: syncline test __NAME__.wasm --cases cases
"""
import json

from http_client import request
from wit_world import exports
from wit_world.exports.deliver import (DeliveryOutcome, DeliveryOutcome_Delivered, DeliveryOutcome_Permanent,
                                       DeliveryOutcome_Retryable, Retry)
from wit_world.imports import canonical, config


def document(msg: canonical.Message) -> bytes:
    """The downstream's document for one message (shape it here)."""
    kind = type(msg.body).__name__.removeprefix("Body_")
    return json.dumps({"id": msg.id, "kind": kind, "body": _plain(msg.body.value)}).encode()


def _plain(value):
    if hasattr(value, "__dataclass_fields__"):
        return {k.replace("_", "-"): _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "name") and hasattr(value, "value"):  # an enum
        return value.name.lower().replace("_", "-")
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


class Deliver(exports.Deliver):
    def deliver(self, messages: list[canonical.Message]) -> list[DeliveryOutcome]:
        url = config.get("url")
        headers = [("content-type", "application/json")]
        if token := config.get("token"):
            headers.append(("authorization", f"Bearer {token}"))
        outcomes: list[DeliveryOutcome] = []
        for msg in messages:
            key = [("idempotency-key", msg.idempotency_key or msg.id)]
            try:
                status, answer, body = request("POST", url, headers + key, document(msg))
            except Exception as e:  # refused connection, host not allowed, timeout
                outcomes.append(DeliveryOutcome_Retryable(Retry(reason=f"unreachable: {e}", after_ms=None)))
                continue
            if 200 <= status < 300:
                ref = (json.loads(body or b"{}") or {}).get("id") or msg.id
                outcomes.append(DeliveryOutcome_Delivered(str(ref)))
            elif status in (408, 429) or status >= 500:
                after = answer.get("retry-after")
                ms = int(after) * 1000 if after and after.isdigit() else None
                outcomes.append(DeliveryOutcome_Retryable(Retry(reason=f"HTTP {status}", after_ms=ms)))
            else:
                outcomes.append(DeliveryOutcome_Permanent(f"HTTP {status}: {body[:200].decode(errors='replace')}"))
        return outcomes
