"""Two collections per (catalog, model): image rows and heads; named and described so that vectors of
two models, or of two catalogs, can never share one. How versions make writes atomic: versions.py.

    <prefix>[_c_<catalog>]_<model name>_v<version>_<dimension>d_s2      (sanitised to [A-Za-z0-9_])
      image_id   VARCHAR primary key   "<product_id>#<write version>#<image index>"
      version    INT64                 the write that made the row
      product_id VARCHAR(256)
      title      VARCHAR(2048)
      category   VARCHAR(256)
      brand      VARCHAR(256)
      price      DOUBLE
      attributes JSON                 {"key": "value", ...}
      image_uri  VARCHAR(2048)
      embedding  FLOAT_VECTOR(dimension)     HNSW, metric IP (vectors are L2-normalised: IP = cosine)

    <the same name>_heads
      head_id    VARCHAR primary key   "<product_id>#<write version>"
      product_id VARCHAR(256)
      version    INT64
      deleted    BOOL                  a tombstone
      slot       FLOAT_VECTOR(2)       unused (Milvus 2.3 needs a vector field to load a collection)

The descriptions record the schema, model and catalog (JSON); they are checked whenever an
existing collection is opened. The `_s<schema>` suffix keeps collections of an older layout
(schema 1: one row per image, rewritten in place) from being read as this one.
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

SCHEMA_VERSION = 2
MAX_VERSION_DIGITS = 19  # an INT64
MAX_HEAD_ID_BYTES = MAX_PRODUCT_ID_BYTES + 1 + MAX_VERSION_DIGITS  # "<product_id>#<version>"
MAX_IMAGE_ID_BYTES = MAX_HEAD_ID_BYTES + 1 + 4  # "<product_id>#<version>#<index>"
HEADS_SUFFIX = "_heads"
HEAD_SLOT_DIM = 2
HEAD_SLOT = [0.0] * HEAD_SLOT_DIM
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
    raw = f"{prefix}_{model.name}_v{model.version}_{model.dimension}d_s{SCHEMA_VERSION}"
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw)
    if not re.match(r"[A-Za-z_]", name):
        name = "_" + name
    room = MAX_COLLECTION_NAME - len(HEADS_SUFFIX)  # the heads collection adds its suffix
    if len(name) > room:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        name = f"{name[: room - 13]}_{digest}"
    return name


def heads_name(rows_name: str) -> str:
    return rows_name + HEADS_SUFFIX


def description(model: ModelId, catalog: str, role: str = "images") -> str:
    return json.dumps(
        {
            "imagesearch_schema": SCHEMA_VERSION,
            "role": role,
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
    fields.add_field("version", DataType.INT64)
    fields.add_field("product_id", DataType.VARCHAR, max_length=MAX_PRODUCT_ID_BYTES)
    fields.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE_BYTES)
    fields.add_field("category", DataType.VARCHAR, max_length=MAX_CATEGORY_BYTES)
    fields.add_field("brand", DataType.VARCHAR, max_length=MAX_BRAND_BYTES)
    fields.add_field("price", DataType.DOUBLE)
    fields.add_field("attributes", DataType.JSON)
    fields.add_field("image_uri", DataType.VARCHAR, max_length=MAX_IMAGE_URI_BYTES)
    fields.add_field("embedding", DataType.FLOAT_VECTOR, dim=model.dimension)
    return fields


def heads_schema(model: ModelId, catalog: str) -> Any:
    fields = MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False, description=description(model, catalog, "heads")
    )
    fields.add_field("head_id", DataType.VARCHAR, is_primary=True, max_length=MAX_HEAD_ID_BYTES)
    fields.add_field("product_id", DataType.VARCHAR, max_length=MAX_PRODUCT_ID_BYTES)
    fields.add_field("version", DataType.INT64)
    fields.add_field("deleted", DataType.BOOL)
    fields.add_field("slot", DataType.FLOAT_VECTOR, dim=HEAD_SLOT_DIM)
    return fields


def heads_index_params(client: MilvusClient) -> Any:
    index = client.prepare_index_params()
    index.add_index(field_name="slot", index_type="FLAT", metric_type="L2", params={})
    return index


def index_params(client: MilvusClient, hnsw: HnswParams) -> Any:
    index = client.prepare_index_params()
    index.add_index(
        field_name="embedding",
        index_type="HNSW",
        metric_type="IP",
        params={"M": hnsw.m, "efConstruction": hnsw.ef_construction},
    )
    return index


def recorded(info: dict[str, Any]) -> tuple[ModelId, str, str] | None:
    """(model, catalog, role) a describe_collection() says the retriever made it for; None if not ours."""
    try:
        described = json.loads(info.get("description") or "")
        model = described["model"]
        found = ModelId(str(model["name"]), str(model["version"]), int(model["dimension"]))
        if int(described.get("imagesearch_schema", 0)) != SCHEMA_VERSION:
            return None
        return found, str(described.get("catalog", "")), str(described.get("role", "images"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def verify(info: dict[str, Any], name: str, model: ModelId, catalog: str, role: str = "images") -> None:
    """A collection's describe_collection() must show the retriever made it for this model, catalog and role."""
    mine = recorded(info)
    if mine is None:
        raise FailedPrecondition(
            f"collection {name} exists but was not created by this retriever (schema {SCHEMA_VERSION})"
        )
    found, owner, made_as = mine
    if owner != catalog:
        raise FailedPrecondition(f"collection {name} belongs to catalog {owner!r}, not {catalog!r}")
    if made_as != role:
        raise FailedPrecondition(f"collection {name} holds {made_as}, not {role}")
    vector_field = "embedding" if role == "images" else "slot"
    dimension = model.dimension if role == "images" else HEAD_SLOT_DIM
    dims = [f.get("params", {}).get("dim") for f in info.get("fields", []) if f.get("name") == vector_field]
    if found != model or dims != [dimension]:
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
    """The image's position in its product ("<product_id>#<version>#<index>")."""
    try:
        return int(image_id.rsplit("#", 1)[1])
    except (IndexError, ValueError):
        return 0
