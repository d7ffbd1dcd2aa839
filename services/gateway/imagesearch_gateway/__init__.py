"""The public gateway: `SearchService` (search by photo, catalog ingest) with a Redis result cache."""
