"""Kopf handlers: thin glue from Kubernetes events to reconcile decisions."""
