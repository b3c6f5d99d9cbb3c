"""MLflow model from code: indexpair's TF-IDF helper (artifact ``pipeline``)."""

from mlflow.models import set_model

from indexpair.models.helpers import TfidfEmbedder

set_model(TfidfEmbedder())
