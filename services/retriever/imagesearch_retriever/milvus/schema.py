"""One collection per (catalog, model), one row per product image; named and described so that
vectors of two models, or of two catalogs, can never share one.

    <prefix>[_c_<catalog>]_<model name>_v<version>_<dimension>d      (sanitised to [A-Za-z0-9_])
      image_id   VARCHAR primary key   "<product_id>#<image index>"
      product_id VARCHAR(256)
      title      VARCHAR(2048)
      category   VARCHAR(256)
      brand      VARCHAR(256)
      price      DOUBLE
      attributes JSON                 {"key": "value", ...}
      image_uri  VARCHAR(2048)
      embedding  FLOAT_VECTOR(dimension)     HNSW, metric IP (vectors are L2-normalised: IP = cosine)

The collection description records the model and catalog (JSON); it is checked whenever an
existing collection is opened.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pymilvus import DataType, MilvusClient

from imagesearch.common.errors import FailedPrecondition
from imagesearch.common.types import ModelId
from imagesearch.contracts.limits import (
    MAX_BRAND_BYTES,
    MAX_CATEGORY_BYTES,
    MAX_IMAGE_URI_BYTES,
    MAX_PRODUCT_ID_BYTES,
    MAX_TITLE_BYTES,
)

SCHEMA_VERSION = 1
MAX_IMAGE_ID_BYTES = MAX_PRODUCT_ID_BYTES + 1 + 4  # "<product_id>#<index>"
MAX_COLLECTION_NAME = 255
PRODUCT_FIELDS = ("product_id", "title", "category", "brand", "price", "attributes")
HIT_FIELDS = [*PRODUCT_FIELDS, "image_uri"]


@dataclass(frozen=True)
class HnswParams:
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 128


def catalog_prefix(prefix: str, catalog: str) -> str:
    """The default catalog ("") keeps the plain prefix; a named one lives under `<prefix>_c_<catalog>`."""
    return f"{prefix}_c_{catalog}" if catalog else prefix


def collection_name(prefix: str, model: ModelId) -> str:
    """`<prefix>_<name>_v<version>_<dim>d`, with everything outside [A-Za-z0-9_] replaced by '_'.

    Different models can sanitise to one name ("a-b" and "a_b"); the model recorded in the
    description catches that when the collection is opened.
    """
    raw = f"{prefix}_{model.name}_v{model.version}_{model.dimension}d"
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw)
    if not re.match(r"[A-Za-z_]", name):
        name = "_" + name
    if len(name) > MAX_COLLECTION_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        name = f"{name[: MAX_COLLECTION_NAME - 13]}_{digest}"
    return name


def description(model: ModelId, catalog: str) -> str:
    return json.dumps(
        {
            "imagesearch_schema": SCHEMA_VERSION,
            "model": {"name": model.name, "version": model.version, "dimension": model.dimension},
            "catalog": catalog,
        },
        sort_keys=True,
    )


def schema(model: ModelId, catalog: str) -> Any:
    fields = MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False, description=description(model, catalog)
    )
    fields.add_field("image_id", DataType.VARCHAR, is_primary=True, max_length=MAX_IMAGE_ID_BYTES)
    fields.add_field("product_id", DataType.VARCHAR, max_length=MAX_PRODUCT_ID_BYTES)
    fields.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE_BYTES)
    fields.add_field("category", DataType.VARCHAR, max_length=MAX_CATEGORY_BYTES)
    fields.add_field("brand", DataType.VARCHAR, max_length=MAX_BRAND_BYTES)
    fields.add_field("price", DataType.DOUBLE)
    fields.add_field("attributes", DataType.JSON)
    fields.add_field("image_uri", DataType.VARCHAR, max_length=MAX_IMAGE_URI_BYTES)
    fields.add_field("embedding", DataType.FLOAT_VECTOR, dim=model.dimension)
    return fields


def index_params(client: MilvusClient, hnsw: HnswParams) -> Any:
    index = client.prepare_index_params()
    index.add_index(
        field_name="embedding",
        index_type="HNSW",
        metric_type="IP",
        params={"M": hnsw.m, "efConstruction": hnsw.ef_construction},
    )
    return index


def verify(info: dict[str, Any], name: str, model: ModelId, catalog: str) -> None:
    """A collection's describe_collection() must show the retriever made it for this model and catalog."""
    try:
        described = json.loads(info.get("description") or "")
        recorded = described["model"]
        found = ModelId(str(recorded["name"]), str(recorded["version"]), int(recorded["dimension"]))
        owner = str(described.get("catalog", ""))
    except (ValueError, KeyError, TypeError):
        raise FailedPrecondition(
            f"collection {name} exists but was not created by the retriever (no model in its description)"
        ) from None
    if owner != catalog:
        raise FailedPrecondition(f"collection {name} belongs to catalog {owner!r}, not {catalog!r}")
    dims = [f.get("params", {}).get("dim") for f in info.get("fields", []) if f.get("name") == "embedding"]
    if found != model or dims != [model.dimension]:
        raise FailedPrecondition(
            f"collection {name} holds vectors of model {found.name} v{found.version} ({found.dimension}d), "
            f"not {model.name} v{model.version} ({model.dimension}d)"
        )


def product_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A row's product fields as ProductRecord keyword arguments (attributes as strings)."""
    attributes = row.get("attributes") or {}
    return {
        "product_id": row["product_id"],
        "title": row.get("title", ""),
        "category": row.get("category", ""),
        "brand": row.get("brand", ""),
        "price": float(row.get("price", 0.0)),
        "attributes": {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {},
    }


def image_index(image_id: str) -> int:
    try:
        return int(image_id.rsplit("#", 1)[1])
    except (IndexError, ValueError):
        return 0
