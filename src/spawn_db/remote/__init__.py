"""A spawn folder kept in remote storage (``s3://``, ``gs://``, ``az://``, ``file://``...),
read and written through ``fsspec``."""
