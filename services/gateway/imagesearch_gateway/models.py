"""Which model the embedder serves now, and how its scores become same-product probabilities.

`ModelTracker` is the gateway's one owner of that fact. The health loop refreshes it from the
embedder's GetModelInfo, and every Embed answer (which names the model that made its vectors)
updates it too, so a rollout is followed at the first request that sees it. The cores read one
`ServedModel` snapshot per request: the model and its calibration always belong together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from imagesearch.common.errors import Unavailable
from imagesearch.common.types import ModelId
from imagesearch.contracts.calibration import ScoreCalibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    id: ModelId
    # The version's own fit, else the SAME_PRODUCT_CALIBRATION fallback.
    calibration: ScoreCalibration
    own_calibration: bool


class ModelTracker:
    def __init__(self, fallback: ScoreCalibration) -> None:
        self._fallback = fallback
        self._current: ServedModel | None = None

    @property
    def current(self) -> ServedModel:
        if self._current is None:
            raise Unavailable("gateway is starting: the embedder has not named its model yet")
        return self._current

    def observe(self, model: ModelId, calibration: ScoreCalibration | None) -> ServedModel:
        """The snapshot for a model the embedder named; adopted as the current one."""
        served = ServedModel(model, calibration or self._fallback, calibration is not None)
        if served != self._current:
            log.info(
                "gateway: serving model %s v%s (%d-d), same-product calibration %s",
                model.name,
                model.version,
                model.dimension,
                f"{served.calibration} (the model's)"
                if served.own_calibration
                else f"{served.calibration} (SAME_PRODUCT_CALIBRATION: the model carries none)",
            )
            self._current = served
        return served
