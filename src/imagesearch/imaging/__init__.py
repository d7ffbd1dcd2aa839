"""Image handling shared by the embedder service and `imagesearch adapt`: pure numpy + Pillow.

No gRPC, no Triton, no globals changed. One module per job, in the order an upload meets them:

* `sniff`: byte cap, format allow-list from magic bytes, declared size from the header (a
  decompression bomb is refused before Pillow allocates anything);
* `decode`: Pillow decode (JPEG draft scaling), EXIF orientation, errors as rejections;
* `colour`: ICC profiles to sRGB, modes Pillow resamples properly, transparency onto white;
* `frame`: region, crop or letterbox, resize: bytes to the model's uint8 input (`Preprocessor`);
* `objects`: the object of a product shot on a plain background (its box, its cut-out);
* `localize`: where the product is in a shopper's photo, from the model's SALIENCY map;
* `framing`: the views the embedder sends the model (plain, trimmed, localised), composed from
  the above, so the services, the adaptation, the benchmarks and research frame images alike.

Every rejection is an `ImageRejected` with an `ImageErrorReason` (the wire enum's numbers) and a
message a client developer can act on.
"""
