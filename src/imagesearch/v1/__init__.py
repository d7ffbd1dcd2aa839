"""Generated gRPC/protobuf code for the imagesearch.v1 API (see protos/)."""
