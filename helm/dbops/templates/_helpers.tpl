{{/* Chart name, overridable. */}}
{{- define "dbops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name prefix of every object. */}}
{{- define "dbops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's Deployment, Roles and bindings. */}}
{{- define "dbops.operatorName" -}}
{{- printf "%s-operator" (include "dbops.fullname" .) -}}
{{- end -}}

{{/* The ClusterRole bound per DatabaseBackupSchedule to its trigger ServiceAccount (the operator may only bind it). */}}
{{- define "dbops.triggerClusterRole" -}}
{{- printf "%s-trigger" (include "dbops.fullname" .) -}}
{{- end -}}

{{- define "dbops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dbops.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: the same in manifests/operator (release "dbops"), so switching keeps the immutable selector. */}}
{{- define "dbops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "dbops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "dbops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dbops
{{- end -}}

{{- define "dbops.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "dbops.runnerImage" -}}
{{- default (include "dbops.image" .) .Values.runnerImage -}}
{{- end -}}

{{/*
Watched namespaces that get a Role: all of them, except on a live install/upgrade where a namespace does not
exist yet (a Role there would fail the whole release). `lookup` is empty under `helm template` and Argo CD:
kube-system answers only on a live cluster, so offline renderings keep every namespace.
*/}}
{{- define "dbops.rbacNamespaces" -}}
{{- $live := lookup "v1" "Namespace" "" "kube-system" -}}
{{- $result := list -}}
{{- range .Values.watchNamespaces -}}
{{- if or (not $live) (lookup "v1" "Namespace" "" .) -}}
{{- $result = append $result . -}}
{{- end -}}
{{- end -}}
{{- toJson $result -}}
{{- end -}}
