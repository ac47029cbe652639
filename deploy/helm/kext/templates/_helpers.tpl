{{/* The release's full name: the release name, or <release>-kext when it does not say kext. */}}
{{- define "kext.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kext.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component (apiserver or etcd): call with (list $ "apiserver"). */}}
{{- define "kext.selectorLabels" -}}
{{- $top := index . 0 -}}
app.kubernetes.io/name: {{ include "kext.name" $top }}
app.kubernetes.io/instance: {{ $top.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* All labels of one component's objects: call with (list $ "apiserver"). */}}
{{- define "kext.labels" -}}
{{- $top := index . 0 -}}
{{ include "kext.selectorLabels" . }}
app.kubernetes.io/version: {{ $top.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kext
helm.sh/chart: {{ printf "%s-%s" $top.Chart.Name $top.Chart.Version }}
app.kubernetes.io/managed-by: {{ $top.Release.Service }}
{{- end -}}

{{- define "kext.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kext.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kext.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Service's DNS names: what the serving certificate is for. */}}
{{- define "kext.dnsNames" -}}
{{- $svc := include "kext.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- toYaml (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain)) -}}
{{- end -}}

{{/* The resource definitions (CRD manifests) as a YAML list: definitionsFile, else definitions. */}}
{{- define "kext.definitions" -}}
{{- $definitions := list -}}
{{- if .Values.definitionsFile -}}
{{- range $i, $text := regexSplit "(?m)^---[ \\t]*$" .Values.definitionsFile -1 -}}
{{- $doc := fromYaml $text -}}
{{- if hasKey $doc "Error" -}}
{{- fail (printf "definitionsFile, document %d: %s" (add1 $i) $doc.Error) -}}
{{- end -}}
{{- if $doc -}}
{{- $definitions = append $definitions $doc -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- $definitions = .Values.definitions -}}
{{- end -}}
{{- if not $definitions -}}
{{- fail "definitions: give kext at least one CustomResourceDefinition manifest (definitions, or --set-file definitionsFile=crds.yaml)" -}}
{{- end -}}
{{- range $definitions -}}
{{- if or (ne (.kind | default "") "CustomResourceDefinition") (ne (.apiVersion | default "") "apiextensions.k8s.io/v1") -}}
{{- fail (printf "definitions: expected apiextensions.k8s.io/v1 CustomResourceDefinition manifests, got %s %s" (.apiVersion | default "no apiVersion") (.kind | default "no kind")) -}}
{{- end -}}
{{- end -}}
{{- toYaml $definitions -}}
{{- end -}}

{{/* The served group/versions of the definitions, sorted: a YAML list of {group, version}. */}}
{{- define "kext.groupVersions" -}}
{{- $seen := dict -}}
{{- range (include "kext.definitions" . | fromYamlArray) -}}
{{- $group := .spec.group -}}
{{- range .spec.versions -}}
{{- if .served -}}
{{- $_ := set $seen (printf "%s/%s" $group .name) (dict "group" $group "version" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range (keys $seen | sortAlpha) -}}
{{- $out = append $out (get $seen .) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The etcd client URLs kext uses: the bundled members, or etcd.endpoints. */}}
{{- define "kext.etcdEndpoints" -}}
{{- if .Values.etcd.endpoints -}}
{{- toYaml .Values.etcd.endpoints -}}
{{- else -}}
{{- $etcd := printf "%s-etcd" (include "kext.fullname" .) -}}
{{- $urls := list -}}
{{- range $i := until 3 -}}
{{- $urls = append $urls (printf "https://%s-%d.%s.%s.svc:2379" $etcd $i $etcd $.Release.Namespace) -}}
{{- end -}}
{{- toYaml $urls -}}
{{- end -}}
{{- end -}}

{{/* Whether kext talks TLS to etcd: always to the bundled one, to yours with clientSecret. */}}
{{- define "kext.etcdTLS" -}}
{{- if or (not .Values.etcd.endpoints) .Values.etcd.clientSecret -}}true{{- end -}}
{{- end -}}

{{/* The server.yaml kext runs with in the cluster: the `config` value under the cluster's keys. */}}
{{- define "kext.serverConfig" -}}
{{- $tls := include "kext.etcdTLS" . -}}
{{- $cluster := dict
  "apiVersion" "kext.io/v1alpha1"
  "kind" "ServerConfig"
  "serving" (dict
    "bindAddress" "0.0.0.0"
    "port" .Values.port
    "certFile" "/etc/kext/serving/tls.crt"
    "keyFile" "/etc/kext/serving/tls.key")
  "storage" (dict
    "prefix" .Values.etcd.prefix
    "etcd" (dict
      "endpoints" (include "kext.etcdEndpoints" . | fromYamlArray)
      "caFile" (ternary "/etc/kext/etcd/ca.crt" "" (eq $tls "true"))
      "certFile" (ternary "/etc/kext/etcd/tls.crt" "" (eq $tls "true"))
      "keyFile" (ternary "/etc/kext/etcd/tls.key" "" (eq $tls "true"))))
  "authentication" (dict
    "fromCluster" true
    "tokenReview" (dict "enabled" true))
  "authorization" (dict "mode" "Delegated")
  "kubernetes" (dict "kubeconfig" "" "inCluster" true)
  "resources" (list (dict "file" "/etc/kext/config/resources.yaml"))
-}}
{{- if .Values.admission.fromCluster -}}
{{- $_ := set $cluster "admission" (dict "fromCluster" true) -}}
{{- end -}}
{{- toYaml (mergeOverwrite (deepCopy .Values.config) $cluster) -}}
{{- end -}}
