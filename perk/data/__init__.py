"""Task synthesis: generators (one module per family), haystack text, Parquet schema and IO."""
