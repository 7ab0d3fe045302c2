"""FastAPI gateway: the REST face of the product. Knows the Thrift contract, nothing of Celery or files."""
