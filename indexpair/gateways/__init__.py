"""One small module per external system: Milvus, MLflow, the Prefect API."""
