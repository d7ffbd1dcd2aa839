"""What the result cache stores: a request's fingerprint (its key) and the answer, as JSON.

A value that does not decode into an answer (corrupt, or written by something else) reads as a
miss: Redis is a cache, and nothing it holds may fail a search.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from imagesearch.common.types import Hit, Region
from imagesearch_gateway.models import ServedModel
from imagesearch_gateway.ranking import CategoryPrediction, DetectedObject

log = logging.getLogger(__name__)


def fingerprint(request: dict[str, Any], served: ServedModel, options: Any) -> str:
    """Identity of a request for the cache: the normalised request (the image by its SHA-256), the
    model and its calibration (cached hits carry probabilities), and the options (a dataclass)
    that shape the answer."""
    canonical = json.dumps(
        {
            "request": request,
            "model": dataclasses.astuple(served.id),
            "calibration": (served.calibration.slope, served.calibration.intercept),
            "options": dataclasses.asdict(options),
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Answer:
    hits: list[Hit]
    prediction: CategoryPrediction | None
    objects: list[DetectedObject]
    box: Region | None


def encode(answer: Answer) -> bytes:
    return json.dumps(
        {
            "hits": [dataclasses.asdict(hit) for hit in answer.hits],
            "prediction": dataclasses.asdict(answer.prediction) if answer.prediction else None,
            "objects": [dataclasses.asdict(o) for o in answer.objects],
            "box": dataclasses.astuple(answer.box) if answer.box else None,
        }
    ).encode()


def decode(raw: bytes) -> Answer | None:
    """The cached answer, or None (a miss) when the value is not one."""
    try:
        body = json.loads(raw)
        prediction = CategoryPrediction(**body["prediction"]) if body["prediction"] else None
        hits = [Hit(**item) for item in body["hits"]]
        objects = [
            DetectedObject(
                int(o["index"]),
                Region(**o["box"]),
                float(o["salience"]),
                CategoryPrediction(**o["category"]) if o["category"] else None,
            )
            for o in body["objects"]
        ]
        box = Region(*body["box"]) if body["box"] else None
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        log.warning("ignoring a cached value that is not a search answer: %s", err)
        return None
    return Answer(hits, prediction, objects, box)
