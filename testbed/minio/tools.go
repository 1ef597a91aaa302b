//go:build tools

// Package tools pins the MinIO server the test bed builds.
package tools

import _ "github.com/minio/minio"
