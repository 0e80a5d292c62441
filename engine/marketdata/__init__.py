"""Market data on disk: the Parquet schema, importers, catalogue and readers."""
