{{/* Labels every object carries. */}}
{{- define "fedrisk.labels" -}}
app.kubernetes.io/name: fedrisk
app.kubernetes.io/part-of: fedrisk
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fedrisk.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* Pod security context: restricted Pod Security Standard. */}}
{{- define "fedrisk.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "fedrisk.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  runAsUser: 65532
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* Probes against the ops listener (plain HTTP, no client certificate). */}}
{{- define "fedrisk.probes" -}}
startupProbe:
  httpGet: {path: /health, port: ops}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /health, port: ops}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /ready, port: ops}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* Volumes: /data and /tmp (read-only root), and the node's TLS material. */}}
{{- define "fedrisk.volumes" -}}
volumes:
  - name: data
    emptyDir: {}
  - name: tmp
    emptyDir: {}
{{- if .Values.tls.enabled }}
  - name: node-tls
    secret:
      secretName: {{ .Values.tls.secretName }}
      defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "fedrisk.volumeMounts" -}}
volumeMounts:
  - {name: data, mountPath: /data}
  - {name: tmp, mountPath: /tmp}
{{- if .Values.tls.enabled }}
  - {name: node-tls, mountPath: /certs, readOnly: true}
{{- end }}
{{- end -}}

{{/* Secrets every service container reads. */}}
{{- define "fedrisk.secretEnv" -}}
- name: DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ .Values.secrets.name }}, key: database-url}}
- name: ENCRYPTION_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.secrets.name }}, key: encryption-key}}
- name: FEDRISK_SUBJECT_REF_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.secrets.name }}, key: subject-ref-key}}
{{- end -}}

{{/* One service Deployment. Arguments: dict root name svc track tag replicas. */}}
{{- define "fedrisk.deployment" -}}
{{- $ := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .deployment }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "fedrisk.labels" $ | nindent 4 }}
    app: {{ .name }}
    version: {{ .track }}
spec:
  {{- if .replicas }}
  replicas: {{ .replicas }}
  {{- end }}
  selector:
    matchLabels: {app: {{ .name }}, version: {{ .track }}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
  template:
    metadata:
      labels:
        {{- include "fedrisk.labels" $ | nindent 8 }}
        app: {{ .name }}
        version: {{ .track }}
      annotations:
        checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") $ | sha256sum }}
    spec:
      {{- include "fedrisk.podSecurity" $ | nindent 6 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ .name }}
          image: {{ $.Values.image.repository }}:{{ .tag }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          args: [serve, --services, {{ .svc.service }}]
          ports:
            - {name: http, containerPort: {{ .svc.port }}}
            - {name: ops, containerPort: {{ $.Values.opsPort }}}
          envFrom:
            - configMapRef: {name: app-config}
          env:
            - name: {{ printf "FEDRISK_%s_ADDR" (upper .svc.service) }}
              value: {{ printf ":%v" .svc.port | quote }}
            - name: VERSION
              value: {{ .track }}
            - name: REDIS_URL
              valueFrom: {secretKeyRef: {name: {{ $.Values.secrets.name }}, key: {{ .svc.redisSecretKey }}}}
            {{- include "fedrisk.secretEnv" $ | nindent 12 }}
            {{- if ne .svc.service "consent" }}
            - name: CONSENT_SERVICE_URL
              value: {{ printf "%s://consent-service:%v" ($.Values.tls.enabled | ternary "https" "http") (index $.Values.services "consent-service").port }}
            {{- end }}
          resources:
            {{- toYaml $.Values.resources | nindent 12 }}
          {{- include "fedrisk.probes" $ | nindent 10 }}
          {{- include "fedrisk.containerSecurity" $ | nindent 10 }}
          {{- include "fedrisk.volumeMounts" $ | nindent 10 }}
      {{- include "fedrisk.volumes" $ | nindent 6 }}
{{- end -}}
