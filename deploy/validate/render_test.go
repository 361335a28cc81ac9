package validate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	istionet "istio.io/api/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	vpav1 "k8s.io/autoscaler/vertical-pod-autoscaler/pkg/apis/autoscaling.k8s.io/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate deploy/k8s and the chart's files/ from the chart and deploy/monitoring")

// namespace is the runbook's namespace, where the plain manifests go.
const namespace = "federated-risk"

// object is one rendered Kubernetes object.
type object struct {
	source     string // template file
	apiVersion string
	kind       string
	name       string
	json       []byte
	decoded    any // the typed object after strict decoding
}

func chartDir(t testing.TB) string { return filepath.Join(deployDir(t), "helm", "fedrisk") }

// renderChart renders the chart with helm's engine: the chart's values,
// then each values file, then extra (like helm template -f ... --set ...).
func renderChart(t testing.TB, extra map[string]any, valueFiles ...string) (map[string]string, []object) {
	t.Helper()
	ch, err := loader.LoadDir(chartDir(t))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals := map[string]any{}
	for _, f := range valueFiles {
		v, err := common.ReadValuesFile(filepath.Join(chartDir(t), f))
		if err != nil {
			t.Fatal(err)
		}
		vals = util.MergeTables(v.AsMap(), vals)
	}
	vals = util.MergeTables(extra, vals)
	rv, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: "fedrisk", Namespace: namespace, IsInstall: true}, nil)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	files := map[string]string{}
	var objs []object
	for _, name := range slices.Sorted(maps.Keys(out)) {
		if !strings.HasSuffix(name, ".yaml") || strings.TrimSpace(out[name]) == "" {
			continue
		}
		files[filepath.Base(name)] = out[name]
		for _, doc := range strings.Split(out[name], "\n---") {
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", name, err, doc)
			}
			if string(j) == "null" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(j, &head); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			objs = append(objs, object{source: filepath.Base(name), apiVersion: head.APIVersion, kind: head.Kind, name: head.Metadata.Name, json: j})
		}
	}
	return files, objs
}

// strictJSON decodes data into v, refusing unknown fields.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// istioObject is a VirtualService or DestinationRule: Kubernetes envelope,
// Istio proto spec.
type istioObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              json.RawMessage `json:"spec"`
}

// decodeStrict decodes every object into its API type, refusing unknown
// fields: k8s.io/api, the VPA's and prometheus-operator's types with
// encoding/json, Istio's specs with protojson (DiscardUnknown false: their
// generated JSON decoders would skip a typo like wieght).
func decodeStrict(t *testing.T, objs []object) {
	t.Helper()
	decodeAll(objs, t.Errorf)
}

// decodeAll decodes objs in place, reporting every refusal.
func decodeAll(objs []object, report func(format string, args ...any)) {
	for i := range objs {
		o := &objs[i]
		var target any
		switch o.apiVersion + " " + o.kind {
		case "v1 Namespace":
			target = &corev1.Namespace{}
		case "v1 ConfigMap":
			target = &corev1.ConfigMap{}
		case "v1 Secret":
			target = &corev1.Secret{}
		case "v1 Service":
			target = &corev1.Service{}
		case "apps/v1 Deployment":
			target = &appsv1.Deployment{}
		case "networking.k8s.io/v1 Ingress":
			target = &networkingv1.Ingress{}
		case "networking.k8s.io/v1 NetworkPolicy":
			target = &networkingv1.NetworkPolicy{}
		case "autoscaling/v2 HorizontalPodAutoscaler":
			target = &autoscalingv2.HorizontalPodAutoscaler{}
		case "policy/v1 PodDisruptionBudget":
			target = &policyv1.PodDisruptionBudget{}
		case "autoscaling.k8s.io/v1 VerticalPodAutoscaler":
			target = &vpav1.VerticalPodAutoscaler{}
		case "monitoring.coreos.com/v1 ServiceMonitor":
			target = &monitoringv1.ServiceMonitor{}
		case "monitoring.coreos.com/v1 PrometheusRule":
			target = &monitoringv1.PrometheusRule{}
		case "networking.istio.io/v1 VirtualService", "networking.istio.io/v1 DestinationRule":
			var env istioObject
			if err := strictJSON(o.json, &env); err != nil {
				report("%s %s (%s): %v", o.kind, o.name, o.source, err)
				continue
			}
			var spec proto.Message = &istionet.VirtualService{}
			if o.kind == "DestinationRule" {
				spec = &istionet.DestinationRule{}
			}
			if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(env.Spec, spec); err != nil {
				report("%s %s (%s) spec: %v", o.kind, o.name, o.source, err)
				continue
			}
			o.decoded = spec
			continue
		default:
			report("%s %s (%s): no API type known for %s %s", o.kind, o.name, o.source, o.apiVersion, o.kind)
			continue
		}
		if err := strictJSON(o.json, target); err != nil {
			report("%s %s (%s): %v", o.kind, o.name, o.source, err)
			continue
		}
		if ns := namespaceOf(target); ns != namespace && o.kind != "Namespace" {
			report("%s %s is in namespace %q, want %s", o.kind, o.name, ns, namespace)
		}
		o.decoded = target
	}
}

func namespaceOf(v any) string {
	if m, ok := v.(metav1.Object); ok {
		return m.GetNamespace()
	}
	return ""
}

func kinds(objs []object) map[string]int {
	k := map[string]int{}
	for _, o := range objs {
		k[o.kind]++
	}
	return k
}

// valueSets are the renderings the tests check: the defaults, production
// (mutual TLS, partners, LoadBalancer), and everything switched on (canary,
// rendered Secrets, the Namespace).
func valueSets() map[string]struct {
	files []string
	extra map[string]any
} {
	secretData := map[string]any{}
	for _, k := range []string{"postgres-password", "redis-password", "encryption-key", "subject-ref-key", "database-url", "redis-url-consent", "redis-url-psi", "redis-url-serving"} {
		secretData[k] = "test-" + k
	}
	return map[string]struct {
		files []string
		extra map[string]any
	}{
		"default":    {nil, nil},
		"production": {[]string{"values-production.yaml"}, nil},
		"all": {[]string{"values-production.yaml"}, map[string]any{
			"namespace":  map[string]any{"create": true},
			"canary":     map[string]any{"enabled": true, "weight": 25},
			"secrets":    map[string]any{"create": true, "data": secretData},
			"ingressTLS": map[string]any{"create": true, "crt": "CRT", "key": "KEY"},
		}},
	}
}

func TestChartRendersStrictly(t *testing.T) {
	for name, vs := range valueSets() {
		t.Run(name, func(t *testing.T) {
			_, objs := renderChart(t, vs.extra, vs.files...)
			decodeStrict(t, objs)
			k := kinds(objs)
			for kind, min := range map[string]int{"Deployment": 4, "Service": 4, "Ingress": 1, "HorizontalPodAutoscaler": 1,
				"VerticalPodAutoscaler": 1, "PodDisruptionBudget": 4, "NetworkPolicy": 5, "VirtualService": 1, "DestinationRule": 1,
				"ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 1} {
				if k[kind] < min {
					t.Errorf("%d %s rendered, want at least %d (kinds: %v)", k[kind], kind, min, k)
				}
			}
			checkSemantics(t, objs)
		})
	}
}

func TestChartLint(t *testing.T) {
	for name, vs := range valueSets() {
		t.Run(name, func(t *testing.T) {
			vals := map[string]any{}
			for _, f := range vs.files {
				v, err := common.ReadValuesFile(filepath.Join(chartDir(t), f))
				if err != nil {
					t.Fatal(err)
				}
				vals = util.MergeTables(v.AsMap(), vals)
			}
			vals = util.MergeTables(vs.extra, vals)
			l := lint.RunAll(chartDir(t), vals, namespace)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %v", m)
				} else {
					t.Logf("helm lint: %v", m)
				}
			}
		})
	}
}

// TestGeneratedFilesMatch: deploy/k8s is the chart rendered with the
// defaults in namespace federated-risk (Namespace included), and the
// chart's files/rules and files/dashboards are deploy/monitoring's. Run
// with -update to regenerate them.
func TestGeneratedFilesMatch(t *testing.T) {
	mon := filepath.Join(deployDir(t), "monitoring")
	want := map[string][]byte{} // path relative to deploy/ → content
	rules, _ := filepath.Glob(filepath.Join(mon, "*_rules.yml"))
	for _, f := range rules {
		want[filepath.Join("helm/fedrisk/files/rules", filepath.Base(f))] = readFile(t, f)
	}
	dashboards, _ := filepath.Glob(filepath.Join(mon, "grafana", "dashboards", "*.json"))
	for _, f := range dashboards {
		want[filepath.Join("helm/fedrisk/files/dashboards", filepath.Base(f))] = readFile(t, f)
	}
	if len(rules) == 0 {
		t.Fatal("no deploy/monitoring/*_rules.yml")
	}
	if *update {
		for _, dir := range []string{"helm/fedrisk/files/rules", "helm/fedrisk/files/dashboards"} {
			os.RemoveAll(filepath.Join(deployDir(t), dir))
		}
		writeAll(t, want)
		want = map[string][]byte{}
	}
	// Render after the chart's files are current.
	files, _ := renderChart(t, map[string]any{"namespace": map[string]any{"create": true}})
	for name, content := range files {
		header := "# Generated from deploy/helm/fedrisk (templates/" + name + ") with the default values in namespace " + namespace + ".\n" +
			"# Do not edit: change the chart and run go test ./validate -run TestGeneratedFilesMatch -update (in deploy/).\n"
		want[filepath.Join("k8s", name)] = []byte(header + strings.TrimLeft(content, "\n"))
	}
	if *update {
		os.RemoveAll(filepath.Join(deployDir(t), "k8s"))
		writeAll(t, want)
	}
	for _, dir := range []string{"k8s", "helm/fedrisk/files/rules", "helm/fedrisk/files/dashboards"} {
		have, _ := filepath.Glob(filepath.Join(deployDir(t), dir, "*"))
		for _, h := range have {
			rel, _ := filepath.Rel(deployDir(t), h)
			if _, ok := want[rel]; !ok && !*update {
				t.Errorf("%s is not generated any more: run with -update", rel)
			}
		}
	}
	for rel, content := range want {
		have, err := os.ReadFile(filepath.Join(deployDir(t), rel))
		if err != nil || !bytes.Equal(have, content) {
			t.Errorf("%s is stale (%v): run go test ./validate -run TestGeneratedFilesMatch -update in deploy/", rel, err)
		}
	}
}

func writeAll(t *testing.T, files map[string][]byte) {
	t.Helper()
	for rel, content := range files {
		path := filepath.Join(deployDir(t), rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPlainManifestsDecode: what operators kubectl apply -f deploy/k8s/
// passes the same strict decoding.
func TestPlainManifestsDecode(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(deployDir(t), "k8s", "*.yaml"))
	if len(paths) == 0 {
		t.Fatal("deploy/k8s is empty: run go test ./validate -run TestGeneratedFilesMatch -update")
	}
	var objs []object
	for _, p := range paths {
		for _, doc := range strings.Split(string(readFile(t, p)), "\n---") {
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if string(j) == "null" {
				continue
			}
			var head struct{ APIVersion, Kind string }
			json.Unmarshal(j, &head)
			objs = append(objs, object{source: filepath.Base(p), apiVersion: head.APIVersion, kind: head.Kind, json: j})
		}
	}
	decodeStrict(t, objs)
	if k := kinds(objs); k["Namespace"] != 1 || k["Deployment"] < 4 {
		t.Errorf("kinds %v: want the Namespace and the Deployments", k)
	}
}

func find[T any](objs []object) []*T {
	var out []*T
	for _, o := range objs {
		if v, ok := o.decoded.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestStrictDecodingRefusesTypos: the decoders above are strict, so a
// misspelt field fails instead of being dropped.
func TestStrictDecodingRefusesTypos(t *testing.T) {
	docs := map[string]string{
		"Deployment":            `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x","namespace":"federated-risk"},"spec":{"replicass":2}}`,
		"VirtualService":        `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"x"},"spec":{"hosts":["a"],"http":[{"route":[{"destination":{"host":"a"},"wieght":10}]}]}}`,
		"VerticalPodAutoscaler": `{"apiVersion":"autoscaling.k8s.io/v1","kind":"VerticalPodAutoscaler","metadata":{"name":"x","namespace":"federated-risk"},"spec":{"updatePolicy":{"updateMod":"Off"}}}`,
		"PrometheusRule":        `{"apiVersion":"monitoring.coreos.com/v1","kind":"PrometheusRule","metadata":{"name":"x","namespace":"federated-risk"},"spec":{"groups":[{"name":"g","rulez":[]}]}}`,
	}
	for kind, doc := range docs {
		var head struct{ APIVersion, Kind string }
		json.Unmarshal([]byte(doc), &head)
		var got []string
		decodeAll([]object{{apiVersion: head.APIVersion, kind: head.Kind, json: []byte(doc)}}, func(f string, a ...any) { got = append(got, fmt.Sprintf(f, a...)) })
		if len(got) == 0 {
			t.Errorf("%s with a misspelt field decoded without error", kind)
		}
	}
}
