"""``riskstream serve``: the model-server pool from the command line.

The model reference is resolved here, before any process starts, so a
typo in ``--model`` is a one-line error instead of N replicas failing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.settings import get_settings
from models.errors import ModelsError
from models.repository import ModelRepository
from serving.pool import run_pool
from serving.server import ServerConfig, run_replica

__all__ = ["serve"]


@click.command(
    epilog="Example, as the reference's clients expect it: riskstream serve --served-name m "
    "--port 8501, then POST http://127.0.0.1:8501/v1/models/m:predict with "
    '{"instances": [{"_c0": 3, "_c1": 2, ...}]} and header X-Auth-Token '
    "(RISKSTREAM_MODEL_TOKEN)."
)
@click.option(
    "--model",
    "model_ref",
    metavar="NAME[:VERSION]",
    default=None,
    help="Repository model to serve; without :VERSION the server follows the model's "
    "CURRENT pointer and hot-reloads new versions [default: the repository's first model].",
)
@click.option(
    "--pmml",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Serve this PMML file instead of a repository model.",
)
@click.option(
    "--served-name",
    default=None,
    help="Name clients use in /v1/models/<name>:predict [default: RISKSTREAM_MODEL_NAME, "
    "m as the reference's clients use, which is also the name the workers ask for].",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=None,
    help="Server processes, on ports PORT..PORT+N-1 [default: RISKSTREAM_MODEL_SERVER_REPLICAS].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the first replica [default: RISKSTREAM_MODEL_SERVER_PORT].",
)
@click.option(
    "--host",
    default=None,
    help="Interface to listen on [default: RISKSTREAM_MODEL_SERVER_HOST].",
)
@click.option(
    "--repository",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model repository folder [default: RISKSTREAM_MODEL_REPOSITORY, else data/models].",
)
def serve(
    model_ref: str | None,
    pmml: Path | None,
    served_name: str | None,
    replicas: int | None,
    port: int | None,
    host: str | None,
    repository: Path | None,
) -> None:
    """Run the PMML model-server pool (the reference's predict API, KServe V2, metrics)."""
    settings = get_settings()
    if model_ref is not None and pmml is not None:
        raise click.UsageError("give --model or --pmml, not both")
    root = repository if repository is not None else settings.repository_path
    pinned: int | None = None
    if pmml is not None:
        model_name = pmml.stem
    else:
        store = ModelRepository(root)
        try:
            ref = model_ref if model_ref is not None else store.default_name()
            resolved = store.resolve(ref)
        except ModelsError as exc:
            raise click.ClickException(exc.message) from exc
        model_name = resolved.name
        pinned = resolved.version if ":" in ref else None
    replicas = replicas if replicas is not None else settings.model_server_replicas
    port = port if port is not None else settings.model_server_port
    if port + replicas - 1 > 65535:
        raise click.BadParameter(
            f"ports {port}..{port + replicas - 1} exceed 65535", param_hint="--port"
        )
    config = ServerConfig.from_settings(
        settings,
        port=port,
        repository=root,
        model_name=model_name,
        pinned_version=pinned,
        pmml=pmml.resolve() if pmml is not None else None,
        **({"host": host} if host is not None else {}),
        **({"served_name": served_name} if served_name else {}),
    )
    if replicas == 1:
        run_replica(config)
    else:
        sys.exit(run_pool(config, replicas))
