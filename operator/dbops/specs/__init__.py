"""Pure builders of Job, CronJob and RBAC manifests from the API models."""
