{{- define "homeo.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "homeo.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "homeo.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The Secret holding a URL: the user's own, or the chart's. */}}
{{- define "homeo.urlSecret" -}}
{{- if .values.existingSecret -}}
{{ .values.existingSecret }}
{{- else -}}
{{ include "homeo.fullname" .root }}-{{ .name }}
{{- end -}}
{{- end -}}

{{/* The pod spec the API and the workers share: the image, settings, the
     URLs as mounted secret files, and uid 10001. */}}
{{- define "homeo.pod" -}}
{{- $root := .root -}}
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
securityContext:
  runAsNonRoot: true
  {{- toYaml $root.Values.securityContext | nindent 2 }}
containers:
  - name: {{ .component }}
    image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag }}"
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: {{ toJson .command }}
    envFrom:
      - configMapRef:
          name: {{ include "homeo.fullname" $root }}
    env:
      - name: HOMEO_DATABASE_URL_FILE
        value: /etc/homeo/database/url
      - name: HOMEO_QUEUE_URL_FILE
        value: /etc/homeo/queue/url
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
    {{- with .ports }}
    ports:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .probes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: database
        mountPath: /etc/homeo/database
        readOnly: true
      - name: queue
        mountPath: /etc/homeo/queue
        readOnly: true
      - name: data
        mountPath: {{ $root.Values.config.HOMEO_DATA_DIR | default "/var/lib/homeo" }}
volumes:
  - name: database
    secret:
      secretName: {{ include "homeo.urlSecret" (dict "root" $root "values" $root.Values.postgres "name" "database") }}
  - name: queue
    secret:
      secretName: {{ include "homeo.urlSecret" (dict "root" $root "values" $root.Values.redis "name" "queue") }}
  - name: data
    emptyDir: {}
{{- end -}}
