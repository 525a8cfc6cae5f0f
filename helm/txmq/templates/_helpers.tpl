{{/* The chart name, overridable. */}}
{{- define "txmq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; pods are <fullname>-<ordinal>. */}}
{{- define "txmq.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service that gives every pod a stable DNS name. */}}
{{- define "txmq.headless" -}}
{{- printf "%s-headless" (include "txmq.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <headless>.<namespace>.svc.<domain>: the suffix of every pod's DNS name. */}}
{{- define "txmq.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "txmq.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* --initial-cluster: node id = ordinal + 1, peer address = the pod's DNS name. */}}
{{- define "txmq.initialCluster" -}}
{{- $fullname := include "txmq.fullname" . }}
{{- $domain := include "txmq.podDomain" . }}
{{- $members := list }}
{{- range $ordinal := until (int .Values.replicaCount) }}
{{- $members = append $members (printf "%d=%s-%d.%s:%d" (add1 $ordinal) $fullname $ordinal $domain (int $.Values.ports.peer)) }}
{{- end }}
{{- join "," $members }}
{{- end }}

{{/* A majority of replicaCount: what the PodDisruptionBudget keeps available. */}}
{{- define "txmq.quorum" -}}
{{- add1 (div (int .Values.replicaCount) 2) }}
{{- end }}

{{- define "txmq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selects the broker pods only (never the hook's or test's pods). */}}
{{- define "txmq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "txmq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{/* Labels of every object, without a component. */}}
{{- define "txmq.commonLabels" -}}
helm.sh/chart: {{ include "txmq.chart" . }}
app.kubernetes.io/name: {{ include "txmq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: txmq
{{- end }}

{{/* Labels of the broker's objects. */}}
{{- define "txmq.labels" -}}
{{ include "txmq.commonLabels" . }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "txmq.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "txmq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "txmq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The client endpoint of the release for in-cluster tools (hook, test pod). */}}
{{- define "txmq.clientEndpoint" -}}
{{- printf "%s.%s.svc.%s:%d" (include "txmq.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.ports.client) }}
{{- end }}

{{/* Every pod's client endpoint: tools keep working while the client Service has no ready pod. */}}
{{- define "txmq.podEndpoints" -}}
{{- $fullname := include "txmq.fullname" . }}
{{- $domain := include "txmq.podDomain" . }}
{{- $eps := list }}
{{- range $ordinal := until (int .Values.replicaCount) }}
{{- $eps = append $eps (printf "%s-%d.%s:%d" $fullname $ordinal $domain (int $.Values.ports.client)) }}
{{- end }}
{{- join "," $eps }}
{{- end }}

{{/* The flags that secure a node: TLS, peer mutual TLS, authentication. */}}
{{- define "txmq.securityArgs" -}}
{{- if .Values.tls.secretName }}
- --tls-cert=/etc/txmq-tls/tls.crt
- --tls-key=/etc/txmq-tls/tls.key
{{- if .Values.tls.requireClientCert }}
- --tls-client-ca=/etc/txmq-tls/ca.crt
{{- end }}
{{- end }}
{{- if .Values.peerTls.secretName }}
- --peer-tls-cert=/etc/txmq-peer-tls/tls.crt
- --peer-tls-key=/etc/txmq-peer-tls/tls.key
- --peer-tls-ca=/etc/txmq-peer-tls/ca.crt
{{- end }}
{{- if .Values.auth.adminSecretName }}
- --auth-admin-file=/etc/txmq-admin
{{- end }}
{{- end }}

{{/* How the chart's tool pods (hook, test) reach a secured cluster: environment. */}}
{{- define "txmq.toolEnv" -}}
{{- if .Values.tls.secretName }}
- name: TXMQ_TLS_CA
  value: /etc/txmq-tls/ca.crt
{{- if .Values.tls.requireClientCert }}
- name: TXMQ_TLS_CLIENT_CERT
  value: /etc/txmq-tls/tls.crt
- name: TXMQ_TLS_CLIENT_KEY
  value: /etc/txmq-tls/tls.key
{{- end }}
{{- end }}
{{- if .Values.auth.adminSecretName }}
- name: TXMQ_USER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.adminSecretName }}
      key: username
- name: TXMQ_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.adminSecretName }}
      key: password
{{- end }}
{{- end }}

{{/* The tool pods' mounts and volumes (the client TLS Secret). */}}
{{- define "txmq.toolMounts" -}}
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: /etc/txmq-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "txmq.toolVolumes" -}}
{{- if .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
{{- end }}
{{- end }}
