{{- define "dbops.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}
{{- define "dbops.runnerImage" -}}{{ default (include "dbops.image" .) .Values.runnerImage }}{{- end -}}
{{- define "dbops.labels" -}}
app.kubernetes.io/name: dbops-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
