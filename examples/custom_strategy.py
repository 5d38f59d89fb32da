"""A wait strategy of your own: wait until the server lists a model.

A service that starts next to an init container (which pulls the model) wants to wait for
*that model*, not just for the server. A strategy is any callable
``strategy(client, deadline) -> ReadyReport``; this one polls ``/api/tags`` until the model is
listed, on the one deadline it is given, and says what it saw last when time runs out.

Use it directly::

    from custom_strategy import ModelListed
    from ollama_ready.readiness import wait_until_ready

    wait_until_ready(strategy=ModelListed("gpt-oss:20b", interval=2.0), timeout=900)

or register it under the ``ollama_ready.strategies`` entry-point group, as the example
distribution in ``custom_strategy_pkg/`` does (``pip install ./examples/custom_strategy_pkg``)::

    [project.entry-points."ollama_ready.strategies"]
    listed = "custom_strategy:ModelListed"

after which every strategy spec can name it, in code, in ``OLLAMA_READY_WAIT`` and on the
command line::

    ollama-ready wait --wait "listed:model=gpt-oss:20b,interval=2s"
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ollama_ready.client import OllamaClient
from ollama_ready.clock import Deadline
from ollama_ready.errors import NotReadyError, OllamaConnectionError, ServerBusy
from ollama_ready.names import ModelName
from ollama_ready.readiness import ReadyLevel, ReadyReport

__all__ = ["ModelListed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelListed:
    """Poll ``GET /api/tags`` every ``interval`` seconds until ``model`` is listed."""

    model: str = field(kw_only=False)
    interval: float = 1.0
    request_timeout: float = 10.0

    def __post_init__(self) -> None:
        ModelName.parse(self.model)  # a bad name fails now, not after the whole wait
        if not self.interval > 0:
            raise ValueError(f"interval must be positive, got {self.interval!r}")

    def __call__(self, client: OllamaClient, deadline: Deadline, /) -> ReadyReport:
        """Wait until the model is listed; raise NotReadyError when the deadline runs out."""
        wanted = ModelName.parse(self.model)
        started = deadline.elapsed()
        attempts = 0
        while True:
            attempts += 1
            seen = self._look(client, deadline, wanted)
            if seen is None:
                return ReadyReport(
                    host=client.base_url,
                    level=ReadyLevel.MODEL_PRESENT,
                    attempts=attempts,
                    waited=deadline.elapsed() - started,
                    strategy=repr(self),
                )
            if deadline.remaining() <= self.interval:
                raise NotReadyError(
                    f"{wanted.display} not listed on {client.base_url} after "
                    f"{deadline.elapsed() - started:.1f} s and {attempts} looks: {seen}",
                    last_failure=seen,
                    host=client.base_url,
                    model=wanted.display,
                    phase="wait",
                    hint="is the init container still pulling it? check its logs",
                )
            deadline.sleep(self.interval)

    def _look(self, client: OllamaClient, deadline: Deadline, wanted: ModelName) -> str | None:
        """Return None when ``wanted`` is listed, else what was seen instead."""
        budget = max(deadline.remaining(), 0.001)
        try:
            models = client.list_models(timeout=min(self.request_timeout, budget))
        except (OllamaConnectionError, ServerBusy) as exc:
            return f"server not answering ({exc.message})"
        if any(wanted.matches(info.name) for info in models):
            return None
        return f"not listed among {len(models)} models"
