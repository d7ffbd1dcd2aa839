"""A Python client of the public SearchService, shared by the `imagesearch` commands and usable on its own.

* `channel`: the gateway address, the channel (message sizes), which codes are worth a retry;
* `catalog`: reading a catalog to index (a CSV or a folder of images);
* `indexer`: indexing a catalog in batches, with retries, back-off and a circuit breaker, so that
  nothing is dropped silently;
* `sheet`: contact sheets (a query and its results in one PNG) to look at.
"""
