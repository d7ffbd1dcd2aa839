"""The rules several parts of imagesearch must agree on, each written once.

* `model`: the Triton model's name, tensors, files and config parameters, and the one reader and
  writer of its `config.pbtxt` files;
* `limits`: sizes and counts that the gateway, the retriever, the embedder and the CLI all enforce;
* `calibration`: the map from a cosine score to a same-product probability, and its fit.

Pure Python (numpy for the fit): every service, tool and test may import it.
"""
