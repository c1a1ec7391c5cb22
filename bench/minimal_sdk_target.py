"""The singer-sdk floor: a target whose sink throws every batch away.

Everything the SDK does by default still happens: reading and parsing each line,
JSON Schema validation of every record, timestamp parsing, batching (10,000
records per batch by default) and re-emitting STATE messages once the records
before them are drained. Whatever a real singer-sdk target does on top of this
costs extra, so this is the fastest a singer-sdk target can be on this machine.

Run::

    python bench/minimal_sdk_target.py --input bench/out/customers_1m.singer > /dev/null
"""

from __future__ import annotations

from typing import Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink


class NullBatchSink(BatchSink):
    """Accepts records in batches and drops them."""

    def process_batch(self, context: dict[str, Any]) -> None:
        """Do nothing with the batch: the SDK clears it after this returns."""


class MinimalSdkTarget(Target):
    """A singer-sdk target with a no-op sink and the SDK's defaults (record validation on)."""

    name = "target-bench-null"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = NullBatchSink


if __name__ == "__main__":
    MinimalSdkTarget.cli()
