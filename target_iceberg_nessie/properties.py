"""Property keys the target writes into snapshot summaries, table properties and the catalog.

Every key the platform reads back is declared here once; see docs/target.md for their meaning.
"""

from __future__ import annotations

from typing import Final

PIPELINE_ID: Final = "ingest.pipeline-id"
RUN_ID: Final = "ingest.run-id"
BATCH_ID: Final = "ingest.batch-id"
BATCH_SEQ: Final = "ingest.batch-seq"
STREAM: Final = "ingest.stream"
RECORDS_LOADED: Final = "ingest.records-loaded"  # records of the checkpoint (added-records also counts
# the rows an upsert or overwrite rewrote)
ROWS_REPLACED: Final = "ingest.rows-replaced"  # committed rows an upsert replaced by newer records
SINGER_STATE: Final = "ingest.singer-state"
SINGER_STATE_LOCATION: Final = "ingest.singer-state-location"
TENANT: Final = "ingest.tenant"
# Nessie commit properties (besides the ids and the state above).
STREAMS: Final = "ingest.streams"  # JSON list of the streams the commit touched
TABLES: Final = "ingest.tables"  # JSON {table: metadata location}
SUMMARY: Final = "ingest.summary"  # JSON {table: {"rows": n}}
COMMITTED_AT: Final = "ingest.committed-at"
FENCED_BATCH_ID: Final = "ingest.fenced-batch-id"  # a fence commit: this batch can no longer land
PUBLISH: Final = "ingest.publish"  # "wap": a write-audit-publish merge
WAP_BRANCH: Final = "ingest.wap-branch"
WAP_HEAD: Final = "ingest.wap-head"  # the run branch head a publish merged
AUDIT: Final = "ingest.audit"  # JSON list of the audit's checks
CONTRACTS: Final = "ingest.contracts"  # JSON {table: "<contract id>@<version>"} of the commit's tables
WRITER: Final = "ingest.writer"
# Markdown-KV raw files a checkpoint wrote for a table's stream (snapshot summary): their count, and
# their locations as a JSON list, inline or (when long) in a JSON file at the -location.
MARKDOWN_KV_DOCUMENT_COUNT: Final = "ingest.markdown-kv.document-count"
MARKDOWN_KV_DOCUMENTS: Final = "ingest.markdown-kv.documents"
MARKDOWN_KV_DOCUMENTS_LOCATION: Final = "ingest.markdown-kv.documents-location"

# Singer state at most this large (bytes of JSON) is kept inline; larger state goes to a file.
INLINE_STATE_MAX_BYTES: Final = 8192
