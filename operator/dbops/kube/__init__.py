"""The only code that calls the Kubernetes API from the operator."""
