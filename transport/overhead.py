"""Stock Faust's per-record costs that buy a riskstream worker nothing, removed.

The Conductor sizes the producer buffer before every record (a settings
lookup each time), the Monitor keeps per-record statistics nobody reads,
every event looks its class up in the settings, and Python's young
generation is collected every few dozen records.
"""

from __future__ import annotations

import gc
from typing import Any

import faust
from faust.sensors import Monitor
from faust.transport.drivers import aiokafka as kafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message

__all__ = ["BatchMonitor", "CachedSizeProducerBuffer", "LeanApp", "LeanProducer"]

#: Allocations between two young-generation collections in a worker. Python's
#: default (700) collects every few dozen records; each batch allocates about
#: ten objects per record, all freed by reference counting, none in cycles.
GC_GENERATION0_THRESHOLD = 50_000


class CachedSizeProducerBuffer(ProducerBuffer):
    """Faust's producer buffer, sized without a settings lookup.

    The Conductor asks for ``size`` before every record it delivers; the
    stock property reads ``app.conf.producer_threaded`` each time, which
    cannot change once the producer exists.
    """

    _threaded: bool | None = None

    @property
    def size(self) -> int:
        if self._threaded is None:
            assert self.app is not None
            self._threaded = bool(self.app.conf.producer_threaded)
        if self._threaded:
            return len(self.queue._queue) if self.queue else 0  # type: ignore[attr-defined]
        return len(self.pending._queue)  # type: ignore[attr-defined]


class LeanProducer(kafka_driver.Producer):
    """Faust's aiokafka producer with :class:`CachedSizeProducerBuffer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Same fields, cheaper size: the buffer was built (and wired to the
        # threaded producer) by the base class, so its class is swapped in place.
        self.buffer.__class__ = CachedSizeProducerBuffer


class BatchMonitor(Monitor):
    """Faust's Monitor without its per-record statistics (nobody reads them here).

    It stays the App's sensor for rebalances, commits and sends, and its
    ``stream_inbound_time``, which the livelock detector reads, is set once
    per batch by :func:`take_batches`.
    """

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """Nothing per record."""

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        """Nothing per record."""


class LeanApp(faust.App):
    """Faust's App with a cached event class, the batch Monitor and fewer collections."""

    _event_class: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("Monitor", BatchMonitor)
        super().__init__(*args, **kwargs)

    def create_event(self, key: Any, value: Any, headers: Any, message: Any) -> Any:
        if self._event_class is None:
            self._event_class = self.conf.Event
        return self._event_class(self, key, value, headers, message)

    def worker_init(self) -> None:
        super().worker_init()
        _, generation1, generation2 = gc.get_threshold()
        gc.set_threshold(GC_GENERATION0_THRESHOLD, generation1, generation2)
