"""The dbops test bed: real PostgreSQL, MinIO and a Kubernetes control plane on 127.0.0.1."""
