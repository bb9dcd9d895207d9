{{/* Names and labels. */}}
{{- define "legato.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "legato.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "legato.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "legato.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "ingester"). */}}
{{- define "legato.selectorLabels" -}}
app.kubernetes.io/name: {{ include "legato.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "legato.componentLabels" -}}
{{ include "legato.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "legato.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "legato.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "legato.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Static S3 keys: from the chart's Secret or an existing one; empty means the AWS default chain. */}}
{{- define "legato.s3SecretName" -}}
{{- if .Values.storage.s3.existingSecret -}}
{{- .Values.storage.s3.existingSecret -}}
{{- else if .Values.storage.s3.accessKey -}}
{{- printf "%s-s3" (include "legato.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Azure shared key: from the chart's Secret or an existing one; empty means an identity. */}}
{{- define "legato.azureSecretName" -}}
{{- if eq .Values.storage.backend "azure" -}}
{{- if .Values.storage.azure.existingSecret -}}
{{- .Values.storage.azure.existingSecret -}}
{{- else if .Values.storage.azure.storageAccountKey -}}
{{- printf "%s-azure" (include "legato.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Where a GCS service-account key Secret is mounted. */}}
{{- define "legato.gcsKeyDir" -}}/etc/legato-gcs{{- end -}}

{{- define "legato.gossipJoin" -}}
{{- printf "%s-gossip-ring.%s.svc.%s:%v" (include "legato.fullname" .) .Release.Namespace .Values.clusterDomain .Values.ports.memberlist -}}
{{- end -}}

{{/*
The configuration file. The chart renders the keys that must agree with its Services, volumes
and mode; .Values.config is merged over them.
*/}}
{{- define "legato.baseConfig" -}}
{{- $single := .Values.singleBinary.enabled -}}
{{- $s3 := .Values.storage.s3 -}}
{{- if and (not $single) (eq .Values.storage.backend "local") -}}
{{- fail "storage.backend must be s3, gcs or azure in microservices mode (every role reads the same bucket); local is for singleBinary.enabled" -}}
{{- end -}}
{{- if not (has .Values.storage.backend (list "s3" "gcs" "azure" "local")) -}}
{{- fail "storage.backend must be s3, gcs, azure or local" -}}
{{- end -}}
multitenancy_enabled: {{ .Values.multitenancy }}
server:
  http_listen_port: {{ .Values.ports.http }}
  grpc_listen_port: {{ .Values.ports.grpc }}
  log_level: {{ .Values.logLevel }}
distributor:
  receivers:
    otlp:
      protocols:
        grpc:
          endpoint: "0.0.0.0:{{ .Values.ports.otlpGrpc }}"
        http:
          endpoint: "0.0.0.0:{{ .Values.ports.otlpHttp }}"
  {{- with .Values.receivers }}
  {{- if .zipkin.enabled }}
    zipkin:
      endpoint: "0.0.0.0:{{ .zipkin.port }}"
  {{- end }}
  {{- $j := .jaeger }}
  {{- if or $j.grpc.enabled $j.thriftHttp.enabled $j.thriftCompact.enabled $j.thriftBinary.enabled }}
    jaeger:
      protocols:
      {{- range $key, $name := dict "grpc" "grpc" "thriftHttp" "thrift_http" "thriftCompact" "thrift_compact" "thriftBinary" "thrift_binary" }}
      {{- $p := index $j $key }}
      {{- if $p.enabled }}
        {{ $name }}:
          endpoint: "0.0.0.0:{{ $p.port }}"
      {{- end }}
      {{- end }}
  {{- end }}
  {{- end }}
{{- if not $single }}
memberlist:
  bind_port: {{ .Values.ports.memberlist }}
  advertise_port: {{ .Values.ports.memberlist }}
  join_members:
    - {{ include "legato.gossipJoin" . }}
{{- end }}
ingester:
  lifecycler:
    ring:
      replication_factor: {{ if $single }}1{{ else }}{{ .Values.replicationFactor }}{{ end }}
storage:
  trace:
    backend: {{ .Values.storage.backend }}
    blocklist_poll: {{ .Values.storage.blocklistPoll }}
    wal:
      path: {{ printf "%s/wal" .Values.storage.dataPath }}
{{- if eq .Values.storage.backend "local" }}
    local:
      path: {{ printf "%s/blocks" .Values.storage.dataPath }}
{{- else if eq .Values.storage.backend "gcs" }}
{{- $gcs := .Values.storage.gcs }}
    gcs:
      bucket_name: {{ required "storage.gcs.bucketName is required with storage.backend gcs" $gcs.bucketName | quote }}
      prefix: {{ $gcs.prefix | quote }}
      endpoint: {{ $gcs.endpoint | quote }}
      insecure: {{ $gcs.insecure }}
{{- if $gcs.existingSecret }}
      service_account: {{ printf "%s/%s" (include "legato.gcsKeyDir" .) $gcs.existingSecretKey | quote }}
{{- end }}
{{- else if eq .Values.storage.backend "azure" }}
{{- $azure := .Values.storage.azure }}
    azure:
      container_name: {{ required "storage.azure.containerName is required with storage.backend azure" $azure.containerName | quote }}
      storage_account_name: {{ required "storage.azure.storageAccountName is required with storage.backend azure" $azure.storageAccountName | quote }}
      prefix: {{ $azure.prefix | quote }}
      endpoint_suffix: {{ $azure.endpointSuffix | quote }}
      use_managed_identity: {{ $azure.useManagedIdentity }}
      user_assigned_id: {{ $azure.userAssignedId | quote }}
      use_federated_token: {{ $azure.useFederatedToken }}
{{- else }}
    s3:
      bucket: {{ required "storage.s3.bucket is required with storage.backend s3" $s3.bucket | quote }}
      endpoint: {{ $s3.endpoint | quote }}
      region: {{ $s3.region | quote }}
      insecure: {{ $s3.insecure }}
      forcepathstyle: {{ $s3.forcepathstyle }}
      prefix: {{ $s3.prefix | quote }}
{{- if include "legato.s3SecretName" . }}
      access_key: ${S3_ACCESS_KEY}
      secret_key: ${S3_SECRET_KEY}
{{- end }}
{{- end }}
{{- end -}}

{{- define "legato.config" -}}
{{- $base := include "legato.baseConfig" . | fromYaml -}}
{{- $merged := mustMergeOverwrite $base (deepCopy .Values.config) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/*
The pod template shared by every workload. Call with
(dict "root" $ "component" "ingester" "target" "ingester" "vals" .Values.ingester "persistent" true "otlp" false).
*/}}
{{- define "legato.podTemplate" -}}
{{- $root := .root -}}
{{- $v := .vals -}}
metadata:
  labels:
    {{- include "legato.selectorLabels" (dict "root" $root "component" .component) | nindent 4 }}
    {{- if not $root.Values.singleBinary.enabled }}
    app.kubernetes.io/part-of: memberlist
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "legato.serviceAccountName" $root }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.terminationGracePeriodSeconds }}
  terminationGracePeriodSeconds: {{ . }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "legato.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        - -config.file=/etc/legato/legato.yaml
        - -config.expand-env
        - -target={{ .target }}
        {{- range $v.extraArgs }}
        - {{ . }}
        {{- end }}
      {{- $secret := include "legato.s3SecretName" $root }}
      {{- $azureSecret := include "legato.azureSecretName" $root }}
      {{- if or $secret $azureSecret $v.extraEnv }}
      env:
        {{- if $azureSecret }}
        # Read by Legato (as by Tempo) when storage_account_key is empty.
        - name: AZURE_STORAGE_KEY
          valueFrom:
            secretKeyRef:
              name: {{ $azureSecret }}
              key: {{ $root.Values.storage.azure.existingSecretAccountKeyKey }}
        {{- end }}
        {{- if $secret }}
        - name: S3_ACCESS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ $secret }}
              key: {{ $root.Values.storage.s3.existingSecretAccessKeyKey }}
        - name: S3_SECRET_KEY
          valueFrom:
            secretKeyRef:
              name: {{ $secret }}
              key: {{ $root.Values.storage.s3.existingSecretSecretKeyKey }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ $root.Values.ports.http }}
          protocol: TCP
        - name: grpc
          containerPort: {{ $root.Values.ports.grpc }}
          protocol: TCP
        {{- if .otlp }}
        - name: otlp-grpc
          containerPort: {{ $root.Values.ports.otlpGrpc }}
          protocol: TCP
        - name: otlp-http
          containerPort: {{ $root.Values.ports.otlpHttp }}
          protocol: TCP
        {{- range (include "legato.receiverPorts" $root | fromYamlArray) }}
        - name: {{ .name }}
          containerPort: {{ .port }}
          protocol: {{ .protocol }}
        {{- end }}
        {{- end }}
        {{- if not $root.Values.singleBinary.enabled }}
        - name: gossip-tcp
          containerPort: {{ $root.Values.ports.memberlist }}
          protocol: TCP
        - name: gossip-udp
          containerPort: {{ $root.Values.ports.memberlist }}
          protocol: UDP
        {{- end }}
      # Ready once the WAL is replayed and the role serves; 503 before.
      readinessProbe:
        httpGet:
          path: /ready
          port: http
        initialDelaySeconds: 5
        periodSeconds: 10
        timeoutSeconds: 2
      # Liveness is a TCP check: /ready is 503 during a long WAL replay, which must not
      # get the pod restarted mid-replay.
      livenessProbe:
        tcpSocket:
          port: http
        initialDelaySeconds: 30
        periodSeconds: 20
        failureThreshold: 6
      {{- with $v.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/legato
          readOnly: true
        - name: data
          mountPath: {{ $root.Values.storage.dataPath }}
        - name: tmp
          mountPath: /tmp
        {{- if and (eq $root.Values.storage.backend "gcs") $root.Values.storage.gcs.existingSecret }}
        - name: gcs-key
          mountPath: {{ include "legato.gcsKeyDir" $root }}
          readOnly: true
        {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.affinity }}
  affinity:
    {{- toYaml $v.affinity | nindent 4 }}
  {{- else if .persistent }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "legato.selectorLabels" (dict "root" $root "component" .component) | nindent 16 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "legato.fullname" $root }}-config
    - name: tmp
      emptyDir: {}
    {{- if and (eq $root.Values.storage.backend "gcs") $root.Values.storage.gcs.existingSecret }}
    - name: gcs-key
      secret:
        secretName: {{ $root.Values.storage.gcs.existingSecret }}
    {{- end }}
    {{- if not .persistent }}
    - name: data
      emptyDir: {}
    {{- end }}
{{- end -}}

{{/* An autoscaling/v2 HPA for a Deployment; call with (dict "root" $ "component" "querier" "vals" .Values.querier). */}}
{{- define "legato.hpa" -}}
{{- $v := .vals -}}
{{- if and (not .root.Values.singleBinary.enabled) $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "legato.fullname" .root }}-{{ .component }}
  labels:
    {{- include "legato.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "legato.fullname" .root }}-{{ .component }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    {{- with $v.autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
    {{- with $v.autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* A stateless role: Deployment, Service, optional HPA. Call with (dict "root" $ "component" "querier" "vals" .Values.querier "otlp" false). */}}
{{- define "legato.statelessRole" -}}
{{- $root := .root -}}
{{- $v := .vals -}}
{{- if not $root.Values.singleBinary.enabled }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "legato.fullname" $root }}-{{ .component }}
  labels:
    {{- include "legato.componentLabels" . | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "legato.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    {{- include "legato.podTemplate" (dict "root" $root "component" .component "target" .component "vals" $v "persistent" false "otlp" .otlp) | nindent 4 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "legato.fullname" $root }}-{{ .component }}
  labels:
    {{- include "legato.componentLabels" . | nindent 4 }}
    legato.dev/scrape: "true"
  {{- with (($v.service).annotations) }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ (($v.service).type) | default "ClusterIP" }}
  selector:
    {{- include "legato.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ $root.Values.ports.http }}
      targetPort: http
      protocol: TCP
    - name: grpc
      port: {{ $root.Values.ports.grpc }}
      targetPort: grpc
      protocol: TCP
    {{- if .otlp }}
    - name: otlp-grpc
      port: {{ $root.Values.ports.otlpGrpc }}
      targetPort: otlp-grpc
      protocol: TCP
    - name: otlp-http
      port: {{ $root.Values.ports.otlpHttp }}
      targetPort: otlp-http
      protocol: TCP
    {{- range (include "legato.receiverPorts" $root | fromYamlArray) }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
      protocol: {{ .protocol }}
    {{- end }}
    {{- end }}
{{- include "legato.hpa" . }}
{{- end }}
{{- end -}}

{{/*
The alert rules of alerts/legato-alerts.yaml as YAML, with prometheusRule.runbookBaseUrl put
before each runbook_url (docs/operations.md#<alert>).
*/}}
{{- define "legato.alertRules" -}}
{{- $rules := .Files.Get "alerts/legato-alerts.yaml" | fromYaml }}
{{- $base := .Values.prometheusRule.runbookBaseUrl }}
{{- if $base }}
{{- range $rules.groups }}
{{- range .rules }}
{{- $_ := set .annotations "runbook_url" (printf "%s%s" $base .annotations.runbook_url) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/* The enabled Jaeger and Zipkin receivers' ports, as a YAML list of {name, port, protocol}. */}}
{{- define "legato.receiverPorts" -}}
{{- $r := .Values.receivers -}}
{{- $ports := list -}}
{{- if $r.zipkin.enabled }}{{ $ports = append $ports (dict "name" "zipkin" "port" $r.zipkin.port "protocol" "TCP") }}{{ end -}}
{{- if $r.jaeger.grpc.enabled }}{{ $ports = append $ports (dict "name" "jaeger-grpc" "port" $r.jaeger.grpc.port "protocol" "TCP") }}{{ end -}}
{{- if $r.jaeger.thriftHttp.enabled }}{{ $ports = append $ports (dict "name" "jaeger-http" "port" $r.jaeger.thriftHttp.port "protocol" "TCP") }}{{ end -}}
{{- if $r.jaeger.thriftCompact.enabled }}{{ $ports = append $ports (dict "name" "jaeger-compact" "port" $r.jaeger.thriftCompact.port "protocol" "UDP") }}{{ end -}}
{{- if $r.jaeger.thriftBinary.enabled }}{{ $ports = append $ports (dict "name" "jaeger-binary" "port" $r.jaeger.thriftBinary.port "protocol" "UDP") }}{{ end -}}
{{- toYaml $ports -}}
{{- end -}}
