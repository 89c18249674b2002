"""__NAME__: a Syncline allocator plugin in Python.

Build: ./build.sh        Test: syncline test __NAME__.wasm --cases cases
"""
from wit_world import exports
from wit_world.imports import canonical


class Allocate(exports.Allocate):
    def allocate(self, batch: list[canonical.Message]) -> list[canonical.Message]:
        """The messages that result from the batch; say which rule shaped each."""
        for msg in batch:
            msg.headers.append(canonical.Header(key="allocated-by", value="__TYPE__"))
        return batch
