"""__NAME__: a Syncline source plugin in Python; polls a JSON feed.

Each poll is `GET {url}?since={cursor}`; the feed answers
`{"records": [...], "cursor": "...", "more": false}` and each record
becomes a raw JSON message for the pipeline's mapping stage.
Build: ./build.sh        Test: syncline test __NAME__.wasm --cases cases
"""
import json
from urllib.parse import quote

from componentize_py_types import Err
from http_client import request
from wit_world import exports
from wit_world.exports.poll import Batch
from wit_world.imports import canonical, config
from wit_world.imports.plugin_types import PluginError


def raw(record) -> canonical.Message:
    """A raw JSON message; the host gives it an id and correlation id."""
    body = canonical.Body_Raw(canonical.Raw(content_type="application/json", data=json.dumps(record).encode()))
    return canonical.Message(id="", correlation_id="", causation_id=None, tenant="", source_system="__NAME__",
                             schema_version="__SCHEMA_VERSION__", occurred_at="", priority=canonical.Priority.NORMAL,
                             idempotency_key=None, headers=[], body=body)


class Poll(exports.Poll):
    def poll(self, cursor: str | None) -> Batch:
        url = config.get("url")
        if cursor is not None:
            url += ("&" if "?" in url else "?") + "since=" + quote(cursor)
        try:
            status, _, body = request("GET", url)
        except Exception as e:
            raise Err(PluginError(code="feed-unreachable", message=str(e), retryable=True))
        if status != 200:
            raise Err(PluginError(code="feed-unavailable", message=f"HTTP {status}", retryable=status >= 500))
        page = json.loads(body)
        return Batch(messages=[raw(r) for r in page.get("records", [])], cursor=page.get("cursor"),
                     more=bool(page.get("more", False)))
