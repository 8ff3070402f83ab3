"""Model registry: locate packaged weights, verify sha256, load once per process, warm up."""

from voxline.models.loader import ModelSet, load_models, model_statuses
from voxline.models.registry import ModelFileError, ModelRegistry

__all__ = ["ModelFileError", "ModelRegistry", "ModelSet", "load_models", "model_statuses"]
