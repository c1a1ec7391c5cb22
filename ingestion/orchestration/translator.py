"""How a job's tables become Dagster asset specs: keys, groups, owners, tags, kinds, descriptions.

The shape of Dagster's maintained integrations (dagster-dbt's DagsterDbtTranslator): one class whose
methods each decide one attribute, so a deployment can subclass it and change one decision.

A job's tables are known before it runs, from (first match wins): the job's `streams`, the streams
its `config` configures (`files[].table_name`, `streams[].name`), the same setting in the Meltano
plugin's own config (the demo extractor), the objects of its contracts, the connector's fixed stream
list, then the tables its last run wrote. A table that shows up only at run time (a stream of a
discovering database tap) is recorded as a runtime materialization of its key, so it appears in the
asset catalog after its first run. A table's quarantine (`__rejected`) and Markdown-KV (`__kv`,
`__doc`) tables are not assets of their own: the loader commits them with their table, and its
materialization counts the rejected rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import dagster as dg
import yaml

from ingestion.jobs import JobSpec, PlatformPaths, configured_streams
from ingestion.registry import Connector
from target_iceberg_nessie.contracts import ContractSet
from target_iceberg_nessie.contracts.model import ObjectContract
from target_iceberg_nessie.naming import table_identifier

_TAG_VALUE: Final = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME: Final = re.compile(r"[^A-Za-z0-9_]+")
_URL: Final = re.compile(r"\s*\(?\bhttps?://\S+\)?")
_TAG_MAX: Final = 63  # Dagster's limit for a tag value
# How connector categories and types read as Dagster kinds (its icons know these names).
_SOURCE_KINDS: Final = {
    "csv_files": "csv",
    "google_drive": "googledrive",
    "google_sheets": "googlesheets",
    "markdown_kv": "markdown",
}


@dataclass(frozen=True)
class JobTable:
    """One table a job writes: its stream, `<tenant>.<namespace>.<table>` and its contract."""

    stream: str
    tenant: str
    namespace: str
    table: str
    contract: ObjectContract | None

    @property
    def identifier(self) -> str:
        return f"{self.tenant}.{self.namespace}.{self.table}"


def dagster_name(text: str) -> str:
    """A Dagster job, group or op name (letters, digits, `_`) for a tenant or job id."""
    return _NAME.sub("_", text).strip("_") or "_"


def tag_value(text: str) -> str:
    return _TAG_VALUE.sub("_", text)[:_TAG_MAX].strip("_")


def link_free(text: str) -> str:
    """Contract prose without its links: the UI shows descriptions as Markdown, and a URL there would
    lead the reader away from the platform (and may carry a token)."""
    return " ".join(_URL.sub("", text).split())


class IngestTranslator:
    """The Dagster view of a job's tables; subclass and override one method to change one choice."""

    def asset_key(self, job: JobSpec, table: JobTable) -> dg.AssetKey:
        return dg.AssetKey([table.tenant, table.namespace, table.table])

    def group_name(self, job: JobSpec) -> str:
        return dagster_name(job.tenant)

    def owners(self, job: JobSpec, table: JobTable) -> list[str]:
        """`team:` owners: the job's governance owner, the contract's owner and its owner-role team."""
        found: list[str] = []
        contract = table.contract
        candidates = [job.tags.governance.get("owner")]
        if contract is not None:
            candidates.append(contract.table_properties().get("governance.owner"))
            team = contract.document.get("team")
            for member in team if isinstance(team, list) else []:
                if isinstance(member, Mapping) and str(member.get("role", "")).lower() == "owner":
                    candidates.append(member.get("username") or member.get("name"))
        for owner in candidates:
            if owner:
                name = owner if "@" in owner else f"team:{dagster_name(str(owner))}"
                if name not in found:
                    found.append(name)
        return found

    def tags(self, job: JobSpec, table: JobTable) -> dict[str, str]:
        """Tenant, job, and the contract's governance tags (domain, data product, classification)."""
        tags = {"ingest/tenant": tag_value(job.tenant), "ingest/job": tag_value(job.name)}
        if table.contract is not None:
            properties = table.contract.table_properties()
            for key, tag in (
                ("governance.domain", "domain"),
                ("governance.data-product", "data_product"),
                ("classification.levels", "classification"),
            ):
                if properties.get(key):
                    tags[tag] = tag_value(properties[key])
            for label in (properties.get("governance.tags") or "").split(","):
                if label and tag_value(label):
                    tags[tag_value(label)] = ""
            tags["contract"] = tag_value(f"{table.contract.contract_id}_{table.contract.version}")
        for key, value in job.tags.governance.items():
            tags[tag_value(key)] = tag_value(value)
        return tags

    def kinds(self, job: JobSpec, connector: Connector) -> set[str]:
        return {"iceberg", _SOURCE_KINDS.get(connector.id, connector.id)}

    def description(self, job: JobSpec, table: JobTable) -> str:
        lines = [f"`{table.identifier}`, written by job `{job.id}` from stream `{table.stream}`."]
        if job.description:
            lines.append(link_free(job.description))
        contract = table.contract
        if contract is not None:
            purpose = (contract.document.get("description") or {}).get("purpose")
            lines.append(
                f"Contract {contract.contract_name} ({contract.ref}, {contract.status}), "
                f"enforcement `{enforcement(job, contract)}`."
            )
            if isinstance(purpose, str):
                lines.append(link_free(purpose))
        return "\n\n".join(lines)

    def asset_spec(self, job: JobSpec, connector: Connector, table: JobTable) -> dg.AssetSpec:
        return dg.AssetSpec(
            key=self.asset_key(job, table),
            description=self.description(job, table),
            group_name=self.group_name(job),
            owners=self.owners(job, table),
            tags=self.tags(job, table),
            kinds=self.kinds(job, connector),
            metadata={
                "dagster/table_name": table.identifier,
                "stream": table.stream,
                "job": job.id,
                "extractor": connector.id,
                **({"contract": table.contract.ref} if table.contract is not None else {}),
            },
            # A run materializes the tables its records reached: an incremental run with nothing new
            # for a stream leaves that table as it was.
            skippable=True,
        )

    def check_spec(self, job: JobSpec, table: JobTable) -> dg.AssetCheckSpec | None:
        """The contract check of a table with a contract: schema, required, patterns, quality rules."""
        contract = table.contract
        if contract is None:
            return None
        return dg.AssetCheckSpec(
            "contract",
            asset=self.asset_key(job, table),
            description=(
                f"Every record against {contract.ref} ({contract.contract_name}) in flight, enforcement "
                f"`{enforcement(job, contract)}`: fails when rows broke it at the `fail` level (the run "
                "stops, nothing of theirs is committed), warns when rows went to quarantine or were "
                "dropped."
            ),
        )


def enforcement(job: JobSpec, contract: ObjectContract) -> str:
    """What the loader does with rows that break the contract: the job's setting over the contract's."""
    return job.target.contract_enforcement or contract.enforcement


def job_tables(job: JobSpec, connector: Connector, paths: PlatformPaths, project: Path) -> list[JobTable]:
    """The tables `job` writes, known before it runs (see the module's docstring for the order)."""
    contracts = _contracts(job, connector, paths)
    streams = (
        list(job.streams)
        or configured_streams(job.config, connector)
        or configured_streams(_plugin_config(project, job.plugin or connector.plugin), connector)
        or sorted({obj.name for obj in contracts.objects.values()})
        or list(connector.streams.names if connector.streams else ())
        or _last_run_streams(job, paths)
    )
    tables = []
    for stream in dict.fromkeys(streams):
        tenant, namespace, table = table_identifier(job.tenant, job.namespace, stream)
        tables.append(JobTable(stream, tenant, namespace, table, contracts.for_stream(stream)))
    return tables


def _contracts(job: JobSpec, connector: Connector, paths: PlatformPaths) -> ContractSet:
    names = job.contracts if job.contracts is not None else connector.default_contracts
    return ContractSet.load([paths.assets / name for name in names]) if names else ContractSet()


def _plugin_config(project: Path, plugin: str) -> dict[str, Any]:
    """The plugin's own `config` in the Meltano project (following `inherit_from`)."""
    extractors = {p.get("name"): p for p in _project_plugins(project, "extractors")}
    merged: dict[str, Any] = {}
    seen: set[str] = set()
    name: str | None = plugin
    while name and name in extractors and name not in seen:
        seen.add(name)
        definition = extractors[name]
        merged = {**(definition.get("config") or {}), **merged}
        name = definition.get("inherit_from")
    return merged


def _project_plugins(project: Path, kind: str) -> Iterable[Mapping[str, Any]]:
    """The plugin definitions of one kind in meltano.yml and its include_paths."""
    for document in project_documents(project):
        for plugin in (document.get("plugins") or {}).get(kind) or []:
            if isinstance(plugin, Mapping):
                yield plugin


def project_documents(project: Path) -> list[Mapping[str, Any]]:
    """meltano.yml and the files its `include_paths` name, parsed (missing files: none)."""
    main = project / "meltano.yml"
    if not main.is_file():
        return []
    root = yaml.safe_load(main.read_text(encoding="utf-8")) or {}
    documents = [root]
    for pattern in root.get("include_paths") or []:
        for file in sorted(project.glob(str(pattern).removeprefix("./"))):
            documents.append(yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    return [d for d in documents if isinstance(d, Mapping)]


def _last_run_streams(job: JobSpec, paths: PlatformPaths) -> Sequence[str]:
    """The streams the job's newest run metadata lists (a discovering tap without `streams`); run
    ids start with their UTC time, so the newest sorts last."""
    folder = paths.logs / job.tenant / "runs"
    for file in sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        streams = document.get("streams") or {} if document.get("job_id") == job.id else {}
        if streams:
            return sorted(streams)
    return []
