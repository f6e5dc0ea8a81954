"""Where the generator learns the model's inputs: a model server, or the repository's PMML.

The served model is the authority (it is what the workers score with), so
the model servers in ``RISKSTREAM_MODEL_SERVERS`` are asked first; a
generator started before them falls back to the repository's current PMML,
which is what ``riskstream serve`` would load.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from models.dataset import DATASETS, Dataset
from models.pmml_schema import read_schema
from models.protocol import TOKEN_HEADER, StatusUnavailable, fetch_status
from models.records import FeatureSchema
from models.repository import ModelRepository

__all__ = ["dataset_for", "schema_from_repository", "schema_from_servers"]

logger = logging.getLogger(__name__)

#: Seconds the generator waits for a model server's schema before trying the next.
SCHEMA_TIMEOUT_S = 2.0


async def schema_from_servers(
    urls: Sequence[str],
    served_name: str,
    token: str,
    ssl_context: ssl.SSLContext | bool = True,
) -> FeatureSchema | None:
    """The served model's schema from the first server that answers, or None."""
    headers = {TOKEN_HEADER: token} if token else {}
    timeout = aiohttp.ClientTimeout(total=SCHEMA_TIMEOUT_S)
    async with aiohttp.ClientSession(
        timeout=timeout,
        headers=headers,
        connector=aiohttp.TCPConnector(ssl=ssl_context),
    ) as session:
        for url in urls:
            try:
                status = await fetch_status(session, url, served_name)
                schema = FeatureSchema.from_model_status(status, served_name)
            except (StatusUnavailable, ValueError) as exc:
                logger.info("model server %s gives no schema: %s", url, exc)
                continue
            logger.info(
                "schema of %s:%s from model server %s",
                schema.model_name,
                schema.model_version,
                url,
            )
            return schema
    return None


def schema_from_repository(root: Path, reference: str | None) -> FeatureSchema:
    """The schema in the PMML of ``reference`` (NAME or NAME:VERSION; default: the current model)."""
    repository = ModelRepository(root)
    version = repository.resolve(reference or repository.default_name())
    schema = FeatureSchema.from_pmml(
        read_schema(version.pmml_path), version.name, str(version.version)
    )
    logger.info("schema of %s from the repository (%s)", version.ref, version.pmml_path)
    return schema


def dataset_for(schema: FeatureSchema) -> Dataset:
    """The data set whose inputs are the model's, for a replay."""
    for load in DATASETS.values():
        dataset = load()
        if tuple(dataset.feature_names) == schema.names:
            return dataset
    raise ValueError(
        f"no data set has the inputs of model {schema.model_name} ({', '.join(schema.names)})"
    )
