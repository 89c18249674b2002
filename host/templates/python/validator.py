"""__NAME__: a Syncline validator plugin in Python.

Build: ./build.sh        Test: syncline test __NAME__.wasm --cases cases
"""
from wit_world import exports
from wit_world.imports import canonical
from wit_world.imports.plugin_types import Violation


class Validate(exports.Validate):
    def validate(self, msg: canonical.Message) -> list[Violation]:
        """Every violation found; an empty list means the message is valid."""
        out = []
        if isinstance(msg.body, canonical.Body_Forecast) and msg.body.value.quantity < 0:
            out.append(Violation(field="body.quantity", code="negative-quantity",
                                 severity=canonical.Severity.ERROR, text="quantity must not be negative"))
        return out
