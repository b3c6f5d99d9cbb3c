"""MLflow model from code: indexpair's sentence-transformers helper (artifact ``model_dir``)."""

from mlflow.models import set_model

from indexpair.models.helpers import SentenceTransformerEmbedder

set_model(SentenceTransformerEmbedder())
