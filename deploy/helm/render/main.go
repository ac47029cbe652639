// Command render renders a helm chart offline the way `helm template` does, for the tests of
// deploy/helm/kext where no helm binary can be installed.
//
//	render --chart DIR [--name NAME] [--namespace NS] [-f values.yaml]... [--set k=v]...
//	       [--set-string k=v]... [--set-file k=path]... [--api-versions group/version[/Kind]]...
//	       [--kube-version v1.33.0] [--values-out FILE [--values-only]]
//
// It writes the manifests to stdout, each document after `---` and a `# Source:` line as helm
// does, and the merged values as JSON to --values-out; with --values-only it stops there (the
// tests check the values against values.schema.json first, as helm does before rendering).
//
// What it does as helm does: Go text/template with sprig's functions less env and expandenv,
// plus include, tpl, required, fail, toYaml, mustToYaml, fromYaml, fromYamlArray, toJson,
// mustToJson, fromJson, fromJsonArray and lookup (which answers an empty map, as under
// `helm template`); missingkey=zero with "<no value>" removed; every file under templates/
// parsed, in helm's order, and those whose name starts with "_" (and NOTES.txt) not written;
// .Values from values.yaml coalesced with -f files and --set/--set-string/--set-file (later
// wins, maps merge, null deletes a default; YAML numbers decode as float64 and --set integers
// as int64, as helm's decoders do); .Release, .Chart, .Capabilities (KubeVersion,
// APIVersions.Has), .Template, .Files.Get. What it leaves out: subcharts, toToml, hooks,
// kind ordering of the output, .helmignore.
//
// Build in GOPATH mode with Debian's sources (golang-github-masterminds-sprig-dev,
// golang-k8s-sigs-yaml-dev): GO111MODULE=off GOPATH=/usr/share/gocode go build.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// versionSet is .Capabilities.APIVersions.
type versionSet []string

// Has tells whether an API version ("apps/v1") or resource ("apps/v1/Deployment") is known.
func (v versionSet) Has(apiVersion string) bool {
	for _, known := range v {
		if known == apiVersion {
			return true
		}
	}
	return false
}

type kubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k kubeVersion) String() string { return k.Version }

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions versionSet
	HelmVersion map[string]interface{}
}

// files is .Files: the chart's files outside templates/.
type files map[string][]byte

func (f files) Get(name string) string      { return string(f[name]) }
func (f files) GetBytes(name string) []byte { return f[name] }

// builtinAPIVersions are the group/versions a current cluster serves, for APIVersions.Has.
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2", "policy/v1",
	"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1",
	"apiregistration.k8s.io/v1", "apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1",
	"authentication.k8s.io/v1", "authorization.k8s.io/v1", "certificates.k8s.io/v1",
	"coordination.k8s.io/v1", "discovery.k8s.io/v1", "events.k8s.io/v1",
	"flowcontrol.apiserver.k8s.io/v1", "node.k8s.io/v1", "scheduling.k8s.io/v1",
}

const (
	errStart = "HELM_ERR_START"
	errEnd   = "HELM_ERR_END"
)

var wrapped = regexp.MustCompile(errStart + `((?s).*)` + errEnd)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run() error {
	var valueFiles, sets, setStrings, setFiles, apiVersions listFlag
	chartDir := flag.String("chart", "", "the chart directory")
	name := flag.String("name", "release-name", "the release name")
	namespace := flag.String("namespace", "default", "the release namespace")
	kubeVer := flag.String("kube-version", "v1.33.0", "the Kubernetes version for .Capabilities")
	valuesOut := flag.String("values-out", "", "write the merged values here as JSON")
	valuesOnly := flag.Bool("values-only", false, "only merge the values (with --values-out)")
	flag.Var(&valueFiles, "f", "a values file (repeatable)")
	flag.Var(&sets, "set", "key=value (repeatable)")
	flag.Var(&setStrings, "set-string", "key=value, always a string (repeatable)")
	flag.Var(&setFiles, "set-file", "key=path: the value is the file's content (repeatable)")
	flag.Var(&apiVersions, "api-versions", "an extra API version for .Capabilities (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		return errors.New("--chart is required")
	}

	var meta map[string]interface{}
	if err := readYAML(filepath.Join(*chartDir, "Chart.yaml"), &meta); err != nil {
		return err
	}
	chartName, _ := meta["name"].(string)
	if chartName == "" {
		return errors.New("Chart.yaml: name is required")
	}

	defaults := map[string]interface{}{}
	if err := readYAML(filepath.Join(*chartDir, "values.yaml"), &defaults); err != nil && !os.IsNotExist(errors.Unwrap(err)) {
		return err
	}
	user := map[string]interface{}{}
	for _, file := range valueFiles {
		current := map[string]interface{}{}
		if err := readYAML(file, &current); err != nil {
			return err
		}
		mergeMaps(user, current)
	}
	for _, s := range sets {
		if err := parseSet(s, user, typedValue); err != nil {
			return err
		}
	}
	for _, s := range setStrings {
		if err := parseSet(s, user, func(v string) interface{} { return v }); err != nil {
			return err
		}
	}
	for _, s := range setFiles {
		readFile := func(p string) interface{} {
			data, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("--set-file %s: %w", s, err)
			}
			return string(data)
		}
		if err := parseSet(s, user, readFile); err != nil {
			return err
		}
	}
	values := coalesce(user, defaults)
	if *valuesOut != "" {
		data, err := json.Marshal(values)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*valuesOut, data, 0o644); err != nil {
			return err
		}
	}
	if *valuesOnly {
		return nil
	}

	templates, others, err := chartFiles(*chartDir, chartName)
	if err != nil {
		return err
	}
	major, minor := splitVersion(*kubeVer)
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": *name, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": chartMetadata(meta),
		"Capabilities": capabilities{
			KubeVersion: kubeVersion{Version: *kubeVer, Major: major, Minor: minor, GitVersion: *kubeVer},
			APIVersions: append(append(versionSet{}, builtinAPIVersions...), apiVersions...),
			HelmVersion: map[string]interface{}{"Version": "v3.18.0"},
		},
		"Files":     others,
		"Subcharts": map[string]interface{}{},
	}
	rendered, order, err := render(templates, top, chartName)
	if err != nil {
		return err
	}
	return writeManifests(rendered, order)
}

func readYAML(file string, into interface{}) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	return nil
}

func splitVersion(v string) (string, string) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return parts[0], "0"
	}
	return parts[0], parts[1]
}

// chartMetadata is .Chart: Chart.yaml's fields under helm's Go field names.
func chartMetadata(meta map[string]interface{}) map[string]interface{} {
	names := map[string]string{
		"apiVersion": "APIVersion", "name": "Name", "version": "Version",
		"appVersion": "AppVersion", "description": "Description", "type": "Type",
		"kubeVersion": "KubeVersion", "home": "Home", "icon": "Icon", "keywords": "Keywords",
		"sources": "Sources", "maintainers": "Maintainers", "annotations": "Annotations",
		"deprecated": "Deprecated",
	}
	out := map[string]interface{}{"IsRoot": true}
	for key, value := range meta {
		if field, ok := names[key]; ok {
			out[field] = value
		}
	}
	return out
}

// chartFiles reads templates/ (keyed "<chart>/templates/<path>") and the other files.
func chartFiles(dir, chartName string) (map[string]string, files, error) {
	templates := map[string]string{}
	others := files{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			templates[path.Join(chartName, rel)] = string(data)
		case rel != "Chart.yaml" && rel != "values.yaml" && !strings.HasPrefix(rel, "charts/"):
			others[rel] = data
		}
		return nil
	})
	return templates, others, err
}

// templateOrder is helm's parse order: deeper paths first, names in reverse order, so that a
// template defined twice takes the definition nearest the chart's root.
func templateOrder(names []string) {
	sort.Slice(names, func(i, j int) bool {
		a, b := names[i], names[j]
		ca, cb := strings.Count(a, "/"), strings.Count(b, "/")
		if ca != cb {
			return ca > cb
		}
		return a > b
	})
}

func render(templates map[string]string, top map[string]interface{}, chartName string) (map[string]string, []string, error) {
	t := template.New("gotpl").Option("missingkey=zero")
	included := map[string]int{}
	t.Funcs(funcMap(t, included))
	names := make([]string, 0, len(templates))
	for name := range templates {
		names = append(names, name)
	}
	templateOrder(names)
	for _, name := range names {
		if _, err := t.New(name).Parse(templates[name]); err != nil {
			return nil, nil, fmt.Errorf("parse error: %v", err)
		}
	}
	rendered := map[string]string{}
	var order []string
	for _, name := range names {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		top["Template"] = map[string]interface{}{
			"Name": name, "BasePath": path.Join(chartName, "templates"),
		}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, top); err != nil {
			if m := wrapped.FindStringSubmatch(err.Error()); m != nil {
				return nil, nil, fmt.Errorf("execution error in %s: %s", name, m[1])
			}
			return nil, nil, err
		}
		rendered[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
		order = append(order, name)
	}
	sort.Strings(order)
	return rendered, order, nil
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// writeManifests prints each non-empty document as `helm template` does, after checking it is
// YAML (helm refuses a chart whose output is not).
func writeManifests(rendered map[string]string, order []string) error {
	for _, name := range order {
		for _, doc := range documentSeparator.Split(rendered[name], -1) {
			doc = strings.TrimSpace(doc)
			if doc == "" || onlyComments(doc) {
				continue
			}
			var head map[string]interface{}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return fmt.Errorf("YAML parse error on %s: %v\n%s", name, err, doc)
			}
			fmt.Printf("---\n# Source: %s\n%s\n", name, doc)
		}
	}
	return nil
}

func onlyComments(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

func funcMap(t *template.Template, included map[string]int) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	f["mustToYaml"] = func(v interface{}) (string, error) {
		data, err := yaml.Marshal(v)
		return strings.TrimSuffix(string(data), "\n"), err
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		var a []interface{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	f["mustToJson"] = func(v interface{}) (string, error) {
		data, err := json.Marshal(v)
		return string(data), err
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromJsonArray"] = func(s string) []interface{} {
		var a []interface{}
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["required"] = func(message string, v interface{}) (interface{}, error) {
		if s, ok := v.(string); v == nil || ok && s == "" {
			return v, errors.New(errStart + message + errEnd)
		}
		return v, nil
	}
	f["fail"] = func(message string) (string, error) {
		return "", errors.New(errStart + message + errEnd)
	}
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["include"] = includeFunc(t, included)
	f["tpl"] = tplFunc(t, included)
	return f
}

func includeFunc(t *template.Template, included map[string]int) func(string, interface{}) (string, error) {
	return func(name string, data interface{}) (string, error) {
		if included[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		included[name]++
		defer func() { included[name]-- }()
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
}

// tplFunc renders a string as a template that sees the chart's named templates.
func tplFunc(parent *template.Template, included map[string]int) func(string, interface{}) (string, error) {
	return func(text string, data interface{}) (string, error) {
		t, err := parent.Clone()
		if err != nil {
			return "", err
		}
		t.Option("missingkey=zero")
		t.Funcs(template.FuncMap{"include": includeFunc(t, included), "tpl": tplFunc(t, included)})
		t, err = t.New(parent.Name()).Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf strings.Builder
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
}

// mergeMaps merges src into dst as helm merges -f files: maps recursively, anything else replaced.
func mergeMaps(dst, src map[string]interface{}) {
	for key, value := range src {
		if sub, ok := value.(map[string]interface{}); ok {
			if existing, ok := dst[key].(map[string]interface{}); ok {
				mergeMaps(existing, sub)
				continue
			}
		}
		dst[key] = value
	}
}

// coalesce lays the user's values over the chart's defaults: maps merge, a user null deletes.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for key, value := range defaults {
		out[key] = value
	}
	for key, value := range user {
		if value == nil {
			delete(out, key)
			continue
		}
		sub, userIsMap := value.(map[string]interface{})
		base, defaultIsMap := out[key].(map[string]interface{})
		if userIsMap && defaultIsMap {
			out[key] = coalesce(sub, base)
		} else {
			out[key] = value
		}
	}
	return out
}

var integer = regexp.MustCompile(`^[-+]?(0|[1-9][0-9]*)$`)

// typedValue is how --set types a value: booleans, null, int64 integers, else a string.
func typedValue(v string) interface{} {
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if integer.MatchString(v) {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}

// parseSet applies one --set argument: comma-separated key=value pairs, keys split on dots
// (`\.` and `\,` escape), `name[i]` list indices, `{a,b}` list values.
func parseSet(arg string, into map[string]interface{}, typed func(string) interface{}) error {
	for _, pair := range splitUnescaped(arg, ',', true) {
		eq := strings.Index(pair, "=")
		if eq < 0 {
			return fmt.Errorf("--set %q: key %q has no value", arg, pair)
		}
		key, raw := pair[:eq], pair[eq+1:]
		var value interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			items := []interface{}{}
			for _, item := range splitUnescaped(raw[1:len(raw)-1], ',', false) {
				items = append(items, typed(unescape(item)))
			}
			value = items
		} else {
			value = typed(unescape(raw))
		}
		if err, ok := value.(error); ok {
			return err
		}
		if err := setPath(into, splitUnescaped(key, '.', false), value); err != nil {
			return fmt.Errorf("--set %q: %v", arg, err)
		}
	}
	return nil
}

func splitUnescaped(s string, sep byte, braces bool) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case braces && s[i] == '{':
			depth++
		case braces && s[i] == '}':
			depth--
		case s[i] == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func unescape(s string) string {
	return strings.NewReplacer(`\,`, ",", `\.`, ".", `\=`, "=", `\\`, `\`).Replace(s)
}

var indexed = regexp.MustCompile(`^(.*)\[([0-9]+)\]$`)

func setPath(m map[string]interface{}, keys []string, value interface{}) error {
	key := unescape(keys[0])
	if match := indexed.FindStringSubmatch(keys[0]); match != nil {
		key = unescape(match[1])
		index, _ := strconv.Atoi(match[2])
		list, _ := m[key].([]interface{})
		for len(list) <= index {
			list = append(list, nil)
		}
		if len(keys) == 1 {
			list[index] = value
		} else {
			sub, ok := list[index].(map[string]interface{})
			if !ok {
				sub = map[string]interface{}{}
			}
			if err := setPath(sub, keys[1:], value); err != nil {
				return err
			}
			list[index] = sub
		}
		m[key] = list
		return nil
	}
	if len(keys) == 1 {
		m[key] = value
		return nil
	}
	sub, ok := m[key].(map[string]interface{})
	if !ok {
		sub = map[string]interface{}{}
		m[key] = sub
	}
	return setPath(sub, keys[1:], value)
}
