"""Model-from-code files: MLflow copies one into each logged model and runs it on load."""
