"""__NAME__: a Syncline transformer plugin in Python.

Build: ./build.sh        Test: syncline test __NAME__.wasm --cases cases
The type mapping, errors, config, tables, state and logging are in the
plugin guide (docs/PLUGINS.md of Syncline).
"""
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import canonical, config, log
from wit_world.imports.log import Level
from wit_world.imports.plugin_types import PluginError


class Transform(exports.Transform):
    def transform(self, msg: canonical.Message) -> list[canonical.Message]:
        """The messages that replace `msg`: [] drops it, several split it."""
        if isinstance(msg.body, canonical.Body_Raw) and not msg.body.value.data:
            # A refusal the host records with its code (dead letter, trace).
            raise Err(PluginError(code="empty-payload", message="the raw payload is empty", retryable=False))
        log.log(Level.DEBUG, f"mapping {msg.id}")
        msg.headers.append(canonical.Header(key="mapped-by", value=config.get("mapped-by") or "__TYPE__"))
        return [msg]
