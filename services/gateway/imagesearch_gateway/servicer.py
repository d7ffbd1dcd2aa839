"""Thin SearchService servicer: protobuf in, plain types to the cores, protobuf out."""

from __future__ import annotations

from imagesearch.common import convert
from imagesearch.common.server import RpcContext
from imagesearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from imagesearch_gateway.catalog import CatalogCore, ProductOutcome, ProductUpsert
from imagesearch_gateway.search import SearchCore, SearchQuery


def _query(request: search_pb2.SearchRequest) -> SearchQuery:
    which = request.WhichOneof("query")
    if which is None:
        return SearchQuery(catalog=request.catalog)  # neither image nor product: the core says so
    return SearchQuery(
        image=request.image if which == "image" else None,
        product_id=request.product_id if which == "product_id" else None,
        region=convert.region_from_pb(request.region) if request.HasField("region") else None,
        top_k=request.top_k,
        filter=convert.filter_from_pb(request.filter),
        min_score=request.min_score,
        skip_cache=request.skip_cache,
        catalog=request.catalog,
        restrict_to_predicted_category=request.restrict_to_predicted_category,
        object_index=request.object_index,
    )


def _result(outcome: ProductOutcome) -> search_pb2.ProductResult:
    return search_pb2.ProductResult(
        product_id=outcome.product_id,
        ok=outcome.ok,
        error=outcome.error,
        images_indexed=outcome.images_indexed,
        possible_duplicates=[
            search_pb2.PossibleDuplicate(product_id=pid, same_product_probability=p)
            for pid, p in outcome.possible_duplicates
        ],
        image_failures=[
            search_pb2.ImageFailure(index=f.index, error=convert.image_error_to_pb(f.reason, f.message))
            for f in outcome.image_failures
        ],
    )


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, search: SearchCore, catalog: CatalogCore) -> None:
        self._search = search
        self._catalog = catalog

    async def Search(self, request: search_pb2.SearchRequest, context: RpcContext) -> search_pb2.SearchResponse:
        outcome = await self._search.search(_query(request))
        response = search_pb2.SearchResponse(
            hits=[convert.hit_to_pb(hit) for hit in outcome.hits],
            model=convert.model_to_pb(outcome.model),
            cache_hit=outcome.cache_hit,
        )
        if outcome.predicted_category is not None:
            response.predicted_category.category = outcome.predicted_category.category
            response.predicted_category.confidence = outcome.predicted_category.confidence
        if (searched := convert.region_to_pb(outcome.searched_box)) is not None:
            response.searched_box.CopyFrom(searched)
        for found in outcome.objects:
            detected = response.objects.add(
                index=found.index, box=convert.region_to_pb(found.box), salience=found.salience
            )
            if found.category is not None:
                detected.category.category = found.category.category
                detected.category.confidence = found.category.confidence
        return response

    async def UpsertProducts(
        self, request: search_pb2.UpsertProductsRequest, context: RpcContext
    ) -> search_pb2.UpsertProductsResponse:
        items = [
            ProductUpsert(
                product=convert.product_from_pb(item.product),
                images=[(image.content, image.uri) for image in item.images],
            )
            for item in request.products
        ]
        outcomes = await self._catalog.upsert(items, request.catalog, request.duplicate_threshold)
        return search_pb2.UpsertProductsResponse(results=[_result(o) for o in outcomes])

    async def DeleteProducts(
        self, request: search_pb2.DeleteProductsRequest, context: RpcContext
    ) -> search_pb2.DeleteProductsResponse:
        deleted, not_found = await self._catalog.delete(list(request.product_ids), request.catalog)
        return search_pb2.DeleteProductsResponse(deleted=deleted, not_found=not_found)

    async def GetProduct(self, request: search_pb2.GetProductRequest, context: RpcContext) -> common_pb2.Product:
        return convert.product_to_pb(await self._catalog.get(request.product_id, request.catalog))

    async def DeleteCatalog(
        self, request: search_pb2.DeleteCatalogRequest, context: RpcContext
    ) -> search_pb2.DeleteCatalogResponse:
        return search_pb2.DeleteCatalogResponse(existed=await self._catalog.delete_catalog(request.catalog))
