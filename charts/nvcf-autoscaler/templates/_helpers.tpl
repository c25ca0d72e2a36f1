{{/* Names and labels shared by every object of the release. */}}
{{- define "nvcf-autoscaler.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nvcf-autoscaler.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "nvcf-autoscaler.labels" -}}
app.kubernetes.io/name: {{ include "nvcf-autoscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "nvcf-autoscaler.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "nvcf-autoscaler.broker" -}}
{{- .Values.broker.name | default (include "nvcf-autoscaler.fullname" .) -}}
{{- end -}}

{{- define "nvcf-autoscaler.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "nvcf-autoscaler.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* True (non-empty) when some setting reads a file from the Secret. */}}
{{- define "nvcf-autoscaler.needsSecret" -}}
{{- if or .Values.cassandra.username (eq .Values.tsdb.auth "token") (ne .Values.nvcf.auth "none") -}}true{{- end -}}
{{- end -}}

{{- define "nvcf-autoscaler.secretName" -}}
{{- if .Values.secrets.create -}}
{{- printf "%s-secrets" (include "nvcf-autoscaler.fullname" .) -}}
{{- else -}}
{{- .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "nvcf-autoscaler.secretDir" -}}/var/run/secrets/nvcf-autoscaler{{- end -}}
{{- define "nvcf-autoscaler.tlsDir" -}}/var/run/secrets/nvcf-autoscaler-tsdb-tls{{- end -}}
{{- define "nvcf-autoscaler.cassandraTLSDir" -}}/var/run/secrets/nvcf-autoscaler-cassandra-tls{{- end -}}
{{- define "nvcf-autoscaler.nvcfTLSDir" -}}/var/run/secrets/nvcf-autoscaler-nvcf-tls{{- end -}}
{{- define "nvcf-autoscaler.nvcfAPITLSDir" -}}/var/run/secrets/nvcf-autoscaler-nvcf-api-tls{{- end -}}
{{- define "nvcf-autoscaler.nvcfOAuthTLSDir" -}}/var/run/secrets/nvcf-autoscaler-nvcf-oauth-tls{{- end -}}
{{- /* Whether the Cassandra and NVCF gRPC TLS Secrets are mounted. */}}
{{- define "nvcf-autoscaler.cassandraTLS" -}}{{ if and .Values.cassandra.tls.enabled .Values.cassandra.tls.secret }}true{{ end }}{{- end -}}
{{- define "nvcf-autoscaler.nvcfTLS" -}}{{ if and (eq .Values.nvcf.transport "grpc") (not .Values.nvcf.grpcInsecure) .Values.nvcf.grpcTLS.secret }}true{{ end }}{{- end -}}
{{- /* Whether the NVCF HTTP API's and the token endpoint's TLS Secrets are mounted. */}}
{{- define "nvcf-autoscaler.nvcfAPITLS" -}}{{ if and (eq .Values.nvcf.transport "http") .Values.nvcf.apiTLS.secret }}true{{ end }}{{- end -}}
{{- define "nvcf-autoscaler.nvcfOAuthTLS" -}}{{ if and (eq .Values.nvcf.auth "oauth2") .Values.nvcf.oauth.tls.secret }}true{{ end }}{{- end -}}
{{- define "nvcf-autoscaler.overridesDir" -}}/etc/nvcf-autoscaler/policy{{- end -}}

{{/*
The container both services run; .role is discovery or scale, .res its
resources. Secrets reach the process as files, never as values in env.
*/}}
{{- define "nvcf-autoscaler.container" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: user-container
  image: {{ include "nvcf-autoscaler.image" $root }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  env:
    - name: AUTOSCALER_ROLE
      value: {{ .role }}
    {{- with (include "nvcf-autoscaler.gomemlimit" .res.limits.memory) }}
    # Go's GC works harder near 90 % of the memory limit instead of letting
    # a large cycle's garbage push the container into an OOM kill.
    - name: GOMEMLIMIT
      value: {{ . | quote }}
    {{- end }}
    {{- range $v.extraEnv }}
    - name: {{ .name }}
      value: {{ .value | quote }}
    {{- end }}
  envFrom:
    - configMapRef:
        name: {{ include "nvcf-autoscaler.fullname" $root }}-config
  readinessProbe:
    httpGet:
      path: /health/readiness
  livenessProbe:
    httpGet:
      path: /health/liveness
    periodSeconds: 10
    failureThreshold: 6
  resources:
    {{- toYaml .res | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    {{- if include "nvcf-autoscaler.needsSecret" $root }}
    - name: secrets
      mountPath: {{ include "nvcf-autoscaler.secretDir" $root }}
      readOnly: true
    {{- end }}
    {{- if eq $v.tsdb.auth "mtls" }}
    - name: tsdb-tls
      mountPath: {{ include "nvcf-autoscaler.tlsDir" $root }}
      readOnly: true
    {{- end }}
    {{- if include "nvcf-autoscaler.cassandraTLS" $root }}
    - name: cassandra-tls
      mountPath: {{ include "nvcf-autoscaler.cassandraTLSDir" $root }}
      readOnly: true
    {{- end }}
    {{- if include "nvcf-autoscaler.nvcfTLS" $root }}
    - name: nvcf-tls
      mountPath: {{ include "nvcf-autoscaler.nvcfTLSDir" $root }}
      readOnly: true
    {{- end }}
    {{- if include "nvcf-autoscaler.nvcfAPITLS" $root }}
    - name: nvcf-api-tls
      mountPath: {{ include "nvcf-autoscaler.nvcfAPITLSDir" $root }}
      readOnly: true
    {{- end }}
    {{- if include "nvcf-autoscaler.nvcfOAuthTLS" $root }}
    - name: nvcf-oauth-tls
      mountPath: {{ include "nvcf-autoscaler.nvcfOAuthTLSDir" $root }}
      readOnly: true
    {{- end }}
    {{- if $v.policy.overrides }}
    - name: policy-overrides
      mountPath: {{ include "nvcf-autoscaler.overridesDir" $root }}
      readOnly: true
    {{- end }}
{{- end -}}

{{- define "nvcf-autoscaler.volumes" -}}
{{- $v := .Values -}}
{{- if include "nvcf-autoscaler.needsSecret" . }}
- name: secrets
  secret:
    secretName: {{ required "a setting reads a secret (cassandra.username, tsdb.auth=token or nvcf.auth): set secrets.existingSecret or secrets.create=true" (include "nvcf-autoscaler.secretName" .) }}
{{- end }}
{{- if eq $v.tsdb.auth "mtls" }}
- name: tsdb-tls
  secret:
    secretName: {{ $v.tsdb.tlsSecret }}
{{- end }}
{{- if include "nvcf-autoscaler.cassandraTLS" . }}
- name: cassandra-tls
  secret:
    secretName: {{ $v.cassandra.tls.secret }}
{{- end }}
{{- if include "nvcf-autoscaler.nvcfTLS" . }}
- name: nvcf-tls
  secret:
    secretName: {{ $v.nvcf.grpcTLS.secret }}
{{- end }}
{{- if include "nvcf-autoscaler.nvcfAPITLS" . }}
- name: nvcf-api-tls
  secret:
    secretName: {{ $v.nvcf.apiTLS.secret }}
{{- end }}
{{- if include "nvcf-autoscaler.nvcfOAuthTLS" . }}
- name: nvcf-oauth-tls
  secret:
    secretName: {{ $v.nvcf.oauth.tls.secret }}
{{- end }}
{{- if $v.policy.overrides }}
- name: policy-overrides
  configMap:
    name: {{ include "nvcf-autoscaler.fullname" . }}-policy
{{- end }}
{{- end -}}

{{- define "nvcf-autoscaler.podAnnotations" -}}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
90 % of a memory limit given in Mi or Gi, as GOMEMLIMIT wants it (MiB);
empty for other forms, which then leave Go's default.
*/}}
{{- define "nvcf-autoscaler.gomemlimit" -}}
{{- $q := toString . -}}
{{- if regexMatch "^[0-9]+Mi$" $q -}}
{{- printf "%dMiB" (div (mul (trimSuffix "Mi" $q | int64) 9) 10) -}}
{{- else if regexMatch "^[0-9]+Gi$" $q -}}
{{- printf "%dMiB" (div (mul (trimSuffix "Gi" $q | int64) 9216) 10) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the functions run elsewhere and are addressed by URL
(externalFunctions), empty when the chart deploys them as Knative Services.
Half a pair is refused: a Trigger without a subscriber would be dropped
silently by nothing, and events lost. */}}
{{- define "nvcf-autoscaler.external" -}}
{{- $e := .Values.externalFunctions -}}
{{- if and $e.discoveryURL $e.scaleURL -}}
true
{{- else if or $e.discoveryURL $e.scaleURL -}}
{{- fail "externalFunctions: set both discoveryURL and scaleURL, or neither" -}}
{{- end -}}
{{- end -}}
