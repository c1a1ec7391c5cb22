from __future__ import annotations

import pyarrow as pa
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.table.metadata import new_table_metadata
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
from pyiceberg.table.update import AddSnapshotUpdate, SetSnapshotRefUpdate, update_table_metadata

from target_iceberg_nessie.catalogs.base import arrow_to_iceberg_schema
from target_iceberg_nessie.snapshots import with_snapshot_on_main


def snapshot(snapshot_id: int, parent: int | None, seq: int) -> Snapshot:
    return Snapshot(
        snapshot_id=snapshot_id,
        parent_snapshot_id=parent,
        sequence_number=seq,
        timestamp_ms=1_700_000_000_000 + seq,
        manifest_list=f"/tmp/snap-{snapshot_id}.avro",
        summary=Summary(operation=Operation.APPEND),
        schema_id=0,
    )


def test_matches_pyiceberg_update_table_metadata() -> None:
    metadata = new_table_metadata(
        schema=arrow_to_iceberg_schema(pa.schema([("id", pa.int64())])),
        partition_spec=UNPARTITIONED_PARTITION_SPEC,
        sort_order=UNSORTED_SORT_ORDER,
        location="/tmp/t",
        properties={"format-version": "2"},
    )
    ours = theirs = metadata
    parent = None
    for seq, snapshot_id in enumerate([11, 22, 33], start=1):
        new = snapshot(snapshot_id, parent, seq)
        ours = with_snapshot_on_main(ours, new)
        theirs = update_table_metadata(
            theirs,
            (
                AddSnapshotUpdate(snapshot=new),
                SetSnapshotRefUpdate(
                    snapshot_id=snapshot_id,
                    parent_snapshot_id=parent,
                    ref_name=MAIN_BRANCH,
                    type=SnapshotRefType.BRANCH,
                ),
            ),
        )
        parent = snapshot_id
    assert ours == theirs
    assert ours.current_snapshot_id == 33
    assert len(metadata.snapshots) == 0, "the base metadata was not mutated"
