//go:build tools

// Package tools pins the Helm command the test bed builds (chart lint, template, install in tests and the demo).
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
