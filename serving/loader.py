"""Which model version each served name answers with, and hot reload.

A :class:`ServedModel` holds the version currently answering. A new version
(the repository's ``CURRENT`` pointer moved, or an explicit load request)
is built in the background by :func:`serving.model.load_model` and then
swapped in with one assignment: requests already running keep the object
they started with, new requests get the new one, nobody waits for the load.
A version that fails to load is recorded (and shown in the status) while
the old one keeps serving; the watcher does not retry it until the pointer
moves again.

Where versions come from is a :class:`ModelSource`: the repository (one
model, following its pointer or pinned to a version) or a single PMML file.

A repository model that follows its pointer also follows its ``SHADOW``
pointer: the shadow version is loaded the same way, beside the current one
(:class:`ShadowState`), and scores every request too (serving.api). It
costs no availability: a shadow that fails to load is logged once, shown
in the status and skipped until the pointer moves; the server serves on
without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from models.errors import ModelsError
from models.repository import ModelRepository
from serving.errors import ModelLoadError, ModelNotFound, ServingError
from serving.model import LoadedModel, ModelIdentity, load_model

__all__ = [
    "FileSource",
    "LoadFailure",
    "ModelRegistry",
    "ModelSource",
    "RepositorySource",
    "ServedModel",
    "ShadowState",
]

logger = logging.getLogger(__name__)


class ModelSource(ABC):
    """Where a served model's versions come from."""

    #: whether the watcher should poll :meth:`wanted` for new versions.
    follows_changes: bool

    @abstractmethod
    def wanted(self) -> ModelIdentity:
        """The version that should be serving now (blocking I/O: call off the loop)."""

    @abstractmethod
    def version(self, version: str) -> ModelIdentity:
        """A specific version, for an explicit load request."""

    @abstractmethod
    def describe(self) -> str:
        """Where the versions come from, for logs and the status endpoint."""

    def wanted_shadow(self) -> ModelIdentity | None:
        """The version that should shadow the current one, if any (blocking I/O).

        Only a repository model that follows its pointer has one; a pinned
        version or a file is served alone.
        """
        return None


class RepositorySource(ModelSource):
    """A model in the repository: its current version, or one pinned version."""

    def __init__(
        self, repository: ModelRepository, name: str, pinned: int | None = None
    ) -> None:
        self.repository = repository
        self.name = name
        self.pinned = pinned
        self.follows_changes = pinned is None

    def _identity(self, number: int | None) -> ModelIdentity:
        try:
            found = (
                self.repository.current(self.name)
                if number is None
                else self.repository.version(self.name, number)
            )
        except ModelsError as exc:
            raise ModelNotFound(exc.message) from exc
        return ModelIdentity(found.name, str(found.version), found.pmml_path)

    def wanted(self) -> ModelIdentity:
        return self._identity(self.pinned)

    def version(self, version: str) -> ModelIdentity:
        if not version.isdigit():
            raise ModelNotFound(f"model {self.name!r} has no version {version!r}")
        return self._identity(int(version))

    def wanted_shadow(self) -> ModelIdentity | None:
        if self.pinned is not None:
            return None
        try:
            number = self.repository.shadow_version(self.name)
        except ModelsError as exc:
            raise ModelNotFound(exc.message) from exc
        return None if number is None else self._identity(number)

    def describe(self) -> str:
        pin = f" pinned to version {self.pinned}" if self.pinned is not None else ""
        return f"repository {self.repository.root}, model {self.name}{pin}"


class FileSource(ModelSource):
    """A stand-alone PMML file; each explicit reload counts as the next version."""

    follows_changes = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.stem
        self._loads = 0

    def wanted(self) -> ModelIdentity:
        self._loads = max(self._loads, 1)
        return ModelIdentity(self.name, str(self._loads), self.path)

    def version(self, version: str) -> ModelIdentity:
        raise ModelNotFound(
            f"{self.path} is a single PMML file: it has no version {version!r}"
        )

    def next_version(self) -> ModelIdentity:
        """The file re-read as a new version (after it was replaced on disk)."""
        self._loads += 1
        return ModelIdentity(self.name, str(self._loads), self.path)

    def describe(self) -> str:
        return f"file {self.path}"


@dataclass(frozen=True)
class LoadFailure:
    """A version that could not be loaded, shown in the status until a load succeeds."""

    version: str
    reason: str
    at: float


@dataclass
class ShadowState:
    """The shadow version a served model follows, and what became of it.

    ``version`` is what the ``SHADOW`` pointer names ("" if the pointer
    cannot be read); ``model`` is set once it loaded, ``failure`` if it did
    not. Scoring failures are counted, and logged when the reason changes.
    """

    version: str
    model: LoadedModel | None = None
    failure: LoadFailure | None = None
    scoring_failures: int = 0
    last_scoring_error: str = ""

    @property
    def loading(self) -> bool:
        return self.model is None and self.failure is None


class ServedModel:
    """One served name: the version answering now, the latest failed load, the shadow."""

    def __init__(self, served_name: str, source: ModelSource) -> None:
        self.served_name = served_name
        self.source = source
        self._current: LoadedModel | None = None
        self.failure: LoadFailure | None = None
        self._load_lock = asyncio.Lock()
        self.loading: str | None = None
        self._failure_listeners: list[Callable[[LoadFailure], None]] = []
        self.shadow_state: ShadowState | None = None
        self._shadow_listeners: list[Callable[[str], None]] = []

    def on_load_failure(self, listener: Callable[[LoadFailure], None]) -> None:
        """Call ``listener`` with every failed load (the server counts them in its metrics)."""
        self._failure_listeners.append(listener)

    def on_shadow_failure(self, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with ``"load"`` or ``"score"`` at every failure of the shadow."""
        self._shadow_listeners.append(listener)

    @property
    def shadow(self) -> LoadedModel | None:
        """The shadow version to score beside the current one, if one is loaded.

        None, too, while it is the current version (just promoted, until the
        watcher sees its ``SHADOW`` pointer removed): it is not scored twice.
        """
        state = self.shadow_state
        if state is None or state.model is None:
            return None
        current = self._current
        if current is not None and current.version == state.model.version:
            return None
        return state.model

    @property
    def current(self) -> LoadedModel:
        if self._current is None:
            raise ModelNotFound(f"model {self.served_name!r} is not loaded yet")
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    async def load(self, identity: ModelIdentity | None = None) -> LoadedModel:
        """Load ``identity`` (default: what the source wants) and swap it in.

        Raises :class:`ModelLoadError` (old version still serving) on failure.
        Loads are serialised, so versions never swap in out of order.
        """
        async with self._load_lock:
            if identity is None:
                identity = await asyncio.to_thread(self._wanted_or_next)
            self.loading = identity.version
            try:
                model = await load_model(identity)
            except ServingError as exc:
                self._fail(identity, exc.message)
                raise ModelLoadError(
                    f"model {identity.name} version {identity.version} failed to load: "
                    f"{exc.message}"
                ) from exc
            except Exception as exc:  # a broken PMML can fail deep inside a parser
                logger.exception("unexpected failure loading %s", identity)
                self._fail(identity, f"{type(exc).__name__}: {exc}")
                raise ModelLoadError(
                    f"model {identity.name} version {identity.version} failed to load: {exc}"
                ) from exc
            finally:
                self.loading = None
            previous, self._current = self._current, model
            self.failure = None
            if previous is None:
                logger.info(
                    "model %s: loaded %s version %s (%s evaluator: %s)",
                    self.served_name,
                    identity.name,
                    identity.version,
                    model.evaluator.kind,
                    getattr(model.evaluator, "description", ""),
                )
            elif previous.version == identity.version:
                logger.info(
                    "model %s: reloaded %s version %s",
                    self.served_name,
                    identity.name,
                    identity.version,
                )
            else:
                logger.info(
                    "model %s: now serving %s version %s (was version %s)",
                    self.served_name,
                    identity.name,
                    identity.version,
                    previous.version,
                )
            return model

    def _wanted_or_next(self) -> ModelIdentity:
        """What to load when nothing is named: a file is re-read as its next version."""
        if isinstance(self.source, FileSource) and self._current is not None:
            return self.source.next_version()
        return self.source.wanted()

    def _fail(self, identity: ModelIdentity, reason: str) -> None:
        self.failure = LoadFailure(identity.version, reason, time.time())
        for listener in self._failure_listeners:
            listener(self.failure)
        logger.error(
            "model %s: version %s of %s failed to load, %s: %s",
            self.served_name,
            identity.version,
            identity.name,
            "still serving version " + self._current.version
            if self._current
            else "nothing to serve",
            reason,
        )

    async def refresh(self) -> None:
        """Load the source's wanted version if it is new, then its shadow (the watcher's tick)."""
        await self._refresh_current()
        await self.refresh_shadow()

    async def _refresh_current(self) -> None:
        try:
            wanted = await asyncio.to_thread(self.source.wanted)
        except ServingError as exc:
            logger.warning(
                "model %s: cannot read its current version: %s",
                self.served_name,
                exc.message,
            )
            return
        current = self._current
        if current is not None and wanted.version == current.version:
            return
        if self.failure is not None and self.failure.version == wanted.version:
            return
        with contextlib.suppress(ModelLoadError):  # logged and kept in self.failure
            await self.load(wanted)

    async def refresh_shadow(self) -> None:
        """Follow the source's ``SHADOW`` pointer: load a new shadow, drop a removed one.

        Never raises: a shadow that cannot be read or loaded is recorded in
        :attr:`shadow_state` (shown in the status), logged once and skipped
        until the pointer moves.
        """
        state = self.shadow_state
        try:
            wanted = await asyncio.to_thread(self.source.wanted_shadow)
        except ServingError as exc:
            if (
                state is None
                or state.failure is None
                or state.failure.reason != exc.message
            ):
                self.shadow_state = ShadowState("")
                self._shadow_failed(self.shadow_state, exc.message)
            return
        if wanted is None:
            if state is not None:
                logger.info(
                    "model %s: no shadow version any more (was %s)",
                    self.served_name,
                    state.version,
                )
                self.shadow_state = None
            return
        if state is not None and state.version == wanted.version and not state.loading:
            return
        state = self.shadow_state = ShadowState(wanted.version)
        try:
            model = await load_model(wanted)
        except ServingError as exc:
            self._shadow_failed(state, exc.message)
            return
        except Exception as exc:  # a broken PMML can fail deep inside a parser
            logger.exception("unexpected failure loading shadow %s", wanted)
            self._shadow_failed(state, f"{type(exc).__name__}: {exc}")
            return
        if model.regression or (self._current is not None and self._current.regression):
            self._shadow_failed(
                state,
                "a shadow is compared with the current version by label: both must "
                "be classifications",
            )
            return
        state.model = model
        logger.info(
            "model %s: version %s of %s shadows the current version (%s evaluator)",
            self.served_name,
            wanted.version,
            wanted.name,
            model.evaluator.kind,
        )

    def _shadow_failed(self, state: ShadowState, reason: str) -> None:
        state.failure = LoadFailure(state.version, reason, time.time())
        for listener in self._shadow_listeners:
            listener("load")
        logger.error(
            "model %s: shadow version %s failed to load, serving without a shadow: %s",
            self.served_name,
            state.version or "(unreadable SHADOW pointer)",
            reason,
        )

    def shadow_scoring_failed(self, shadow: LoadedModel, reason: str) -> None:
        """Note that ``shadow`` failed on a request (answered without it); logged when new."""
        state = self.shadow_state
        if state is None or state.model is not shadow:
            return  # the shadow was replaced meanwhile: its state is gone
        state.scoring_failures += 1
        for listener in self._shadow_listeners:
            listener("score")
        if reason != state.last_scoring_error:
            logger.error(
                "model %s: shadow version %s failed to score a request, answered "
                "without it: %s",
                self.served_name,
                state.version,
                reason,
            )
        state.last_scoring_error = reason


class ModelRegistry:
    """The served names of one server process, and the watcher that hot-reloads them."""

    def __init__(self, models: list[ServedModel]) -> None:
        self._models = {model.served_name: model for model in models}
        self._watcher: asyncio.Task[None] | None = None

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def get(self, served_name: str) -> ServedModel:
        model = self._models.get(served_name)
        if model is None:
            served = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFound(
                f"no model named {served_name!r} here (served: {served})"
            )
        return model

    @property
    def ready(self) -> bool:
        return all(model.ready for model in self._models.values())

    async def load_all(self) -> None:
        """The first load of every model (a failure here is fatal for the server) and its shadow."""
        for model in self._models.values():
            await model.load()
            await model.refresh_shadow()

    def start_watching(self, interval_s: float) -> None:
        """Poll every source that follows changes, every ``interval_s`` seconds."""
        if any(model.source.follows_changes for model in self._models.values()):
            self._watcher = asyncio.create_task(
                self._watch(interval_s), name="model-watcher"
            )

    async def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def _watch(self, interval_s: float) -> None:
        followed = [m for m in self._models.values() if m.source.follows_changes]
        while True:
            await asyncio.sleep(interval_s)
            for model in followed:
                await model.refresh()
