package console

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fedrisk/fedrisk/internal/consent"
)

// Errors of the decoders.
var (
	ErrTooLarge     = errors.New("document too large")
	ErrNoImportance = errors.New("the model document has no feature weights")
)

// MaxDocumentBytes bounds a document (card, half, alert list, metrics) the
// console reads.
const MaxDocumentBytes = 16 << 20

// KV is one leaf of a JSON document: its dotted path and its value as text.
type KV struct {
	Key, Value string
}

// FlattenJSON lists the leaves of a JSON document in document order, at
// most maxRows of them (truncated reports whether more were left out).
// Arrays of more than 8 numbers are summarised as one row ("n values:
// first, second, ...") so a card's weight vectors stay readable.
func FlattenJSON(doc []byte, maxRows int) (rows []KV, truncated bool, err error) {
	if len(doc) > MaxDocumentBytes {
		return nil, false, ErrTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, fmt.Errorf("model card: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, errors.New("model card: more than one JSON value")
	}
	// Decoding into any loses the order of object keys; read them again
	// in order with a token walk.
	order, err := keyOrder(doc)
	if err != nil {
		return nil, false, err
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		if len(rows) >= maxRows {
			truncated = true
			return
		}
		switch x := v.(type) {
		case map[string]any:
			keys := order[path]
			if len(keys) != len(x) { // duplicate keys: fall back to sorted
				keys = slices.Sorted(maps.Keys(x))
			}
			if len(keys) == 0 {
				rows = append(rows, KV{Key: path, Value: "{}"})
			}
			for _, k := range keys {
				walk(join(path, k), x[k])
			}
		case []any:
			if s, ok := numberList(x); ok && len(x) > 8 {
				rows = append(rows, KV{Key: path, Value: s})
				return
			}
			if len(x) == 0 {
				rows = append(rows, KV{Key: path, Value: "[]"})
			}
			for i, e := range x {
				walk(path+"["+strconv.Itoa(i)+"]", e)
			}
		case nil:
			rows = append(rows, KV{Key: path, Value: "null"})
		case json.Number:
			rows = append(rows, KV{Key: path, Value: x.String()})
		case bool:
			rows = append(rows, KV{Key: path, Value: strconv.FormatBool(x)})
		case string:
			rows = append(rows, KV{Key: path, Value: x})
		}
	}
	walk("", v)
	return rows, truncated, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func numberList(xs []any) (string, bool) {
	parts := make([]string, 0, 4)
	for i, e := range xs {
		n, ok := e.(json.Number)
		if !ok {
			return "", false
		}
		if i < 4 {
			parts = append(parts, n.String())
		}
	}
	return fmt.Sprintf("%d values: %s, …", len(xs), strings.Join(parts, ", ")), true
}

// keyOrder maps each object's path (as FlattenJSON names it) to its keys
// in document order.
func keyOrder(doc []byte) (map[string][]string, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	order := map[string][]string{}
	var value func(path string) error
	value = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			keys := []string{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				keys = append(keys, k)
				if err := value(join(path, k)); err != nil {
					return err
				}
			}
			order[path] = keys
			_, err := dec.Token()
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := value(path + "[" + strconv.Itoa(i) + "]"); err != nil {
					return err
				}
			}
			_, err := dec.Token()
			return err
		}
		return nil
	}
	if err := value(""); err != nil {
		return nil, fmt.Errorf("model card: %w", err)
	}
	return order, nil
}

// Importance is one feature's weight in a model half.
type Importance struct {
	Feature string
	Weight  float64 // signed: positive raises the predicted risk
}

// FeatureImportance reads the weights of a model half: the features and
// weights of a logistic-regression half (on standardised features, so
// their sizes compare), or a "feature_importance" object of a tree model.
// The result is sorted by decreasing absolute weight.
func FeatureImportance(half []byte) ([]Importance, error) {
	if len(half) > MaxDocumentBytes {
		return nil, ErrTooLarge
	}
	var doc struct {
		Features   []string           `json:"features"`
		Weights    []float64          `json:"weights"`
		Importance map[string]float64 `json:"feature_importance"`
	}
	if err := json.Unmarshal(half, &doc); err != nil {
		return nil, fmt.Errorf("model half: %w", err)
	}
	var out []Importance
	switch {
	case len(doc.Features) > 0 && len(doc.Features) == len(doc.Weights):
		for i, f := range doc.Features {
			out = append(out, Importance{Feature: f, Weight: doc.Weights[i]})
		}
	case len(doc.Importance) > 0:
		for f, w := range doc.Importance {
			out = append(out, Importance{Feature: f, Weight: w})
		}
	default:
		return nil, ErrNoImportance
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := math.Abs(out[i].Weight), math.Abs(out[j].Weight)
		if a != b {
			return a > b
		}
		return out[i].Feature < out[j].Feature
	})
	return out, nil
}

// Receipt is a consent receipt as the console shows it.
type Receipt struct {
	Verified bool   // the signature checked out against the JWKS
	Problem  string // why it did not, when it did not
	KID      string
	consent.Receipt
}

// MaxReceiptBytes bounds a receipt.
const MaxReceiptBytes = 64 << 10

// VerifyReceipt checks a receipt (a JWS) against the consent service's
// JWKS and returns its contents. A receipt whose signature fails is still
// decoded for display, with Verified false and the problem named.
func VerifyReceipt(jws string, jwks []byte) (Receipt, error) {
	if len(jws) > MaxReceiptBytes || len(jwks) > MaxDocumentBytes {
		return Receipt{}, ErrTooLarge
	}
	var set jose.JSONWebKeySet
	jwksErr := json.Unmarshal(jwks, &set)
	var kid string
	r, err := consent.VerifyReceipt(jws, func(k string) (*rsa.PublicKey, error) {
		kid = k
		if jwksErr != nil {
			return nil, fmt.Errorf("JWKS: %w", jwksErr)
		}
		for _, key := range set.Key(k) {
			if pub, ok := key.Key.(*rsa.PublicKey); ok {
				return pub, nil
			}
		}
		return nil, fmt.Errorf("key %q is not in the JWKS", k)
	})
	if err == nil {
		return Receipt{Verified: true, KID: kid, Receipt: r}, nil
	}
	// Decode without checking, to show what it says.
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return Receipt{}, fmt.Errorf("receipt is not a JWS: %w", err)
	}
	payload, derr := decodeSegment(parts[1])
	if derr != nil {
		return Receipt{}, fmt.Errorf("receipt payload: %w", derr)
	}
	var raw consent.Receipt
	if derr := json.Unmarshal(payload, &raw); derr != nil {
		return Receipt{}, fmt.Errorf("receipt payload: %w", derr)
	}
	return Receipt{Problem: err.Error(), KID: kid, Receipt: raw}, nil
}

func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// Alert is one alert of Prometheus's /api/v1/alerts.
type Alert struct {
	Name     string
	Severity string
	State    string // firing or pending
	Since    time.Time
	Summary  string
	Labels   string // the other labels, "k=v, k=v", sorted
}

// ParseAlerts decodes Prometheus's GET /api/v1/alerts answer, firing
// alerts first (most severe first), then pending ones.
func ParseAlerts(body []byte) ([]Alert, error) {
	if len(body) > MaxDocumentBytes {
		return nil, ErrTooLarge
	}
	var doc struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Alerts []struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
				State       string            `json:"state"`
				ActiveAt    time.Time         `json:"activeAt"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("prometheus alerts: %w", err)
	}
	if doc.Status != "success" {
		return nil, fmt.Errorf("prometheus alerts: status %q: %s", doc.Status, doc.Error)
	}
	out := make([]Alert, 0, len(doc.Data.Alerts))
	for _, a := range doc.Data.Alerts {
		al := Alert{Name: a.Labels["alertname"], Severity: a.Labels["severity"], State: a.State, Since: a.ActiveAt,
			Summary: a.Annotations["summary"]}
		if al.Summary == "" {
			al.Summary = a.Annotations["description"]
		}
		var rest []string
		for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
			if k != "alertname" && k != "severity" {
				rest = append(rest, k+"="+a.Labels[k])
			}
		}
		al.Labels = strings.Join(rest, ", ")
		out = append(out, al)
	}
	rank := func(a Alert) int {
		r := 0
		if a.State != "firing" {
			r += 10
		}
		switch a.Severity {
		case "critical":
		case "warning":
			r++
		default:
			r += 2
		}
		return r
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := rank(out[i]), rank(out[j]); ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// MetricSums reads a Prometheus text exposition and returns, for the
// counter or gauge name, the sum of its series per value of label ("" sums
// every series under the key "").
func MetricSums(exposition []byte, name, label string) (map[string]float64, error) {
	if len(exposition) > MaxDocumentBytes {
		return nil, ErrTooLarge
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(exposition))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[string]float64{}
	fam, ok := fams[name]
	if !ok {
		return out, nil
	}
	for _, m := range fam.GetMetric() {
		key := ""
		if label != "" {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					key = lp.GetValue()
				}
			}
		}
		var v float64
		switch {
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v = m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			v = m.GetUntyped().GetValue()
		default:
			continue
		}
		if finite(v) {
			out[key] += v
		}
	}
	return out, nil
}
