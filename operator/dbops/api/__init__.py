"""The dbops.io/v1alpha1 API: pydantic models and CRD generation."""
