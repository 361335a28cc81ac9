package featuresapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Request is the body of POST {prefix}/get-online-features, Feast's shape:
//
//	{"features": ["host_credit:x0", "host_credit:x3"],
//	 "entities": {"id": [25115, "2346"]},
//	 "full_feature_names": false}
type Request struct {
	Features         []string `json:"features"`
	Entities         Entities `json:"entities"`
	FullFeatureNames bool     `json:"full_feature_names,omitempty"`
}

// Entities are the entity key columns of a request, in request order:
// each an entity key name (a view's entity) and one key per row. Keys are
// JSON strings or integers; an integer stands for its decimal text.
type Entities []EntityColumn

// EntityColumn is one entity key column.
type EntityColumn struct {
	Name string
	Keys []string
	raw  []any // as sent (string or json.Number), echoed in the response
}

// maxKeysDecoded stops decoding absurd columns early; the request limit
// (Options.MaxEntities) is checked afterwards with a clearer message.
const maxKeysDecoded = 100000

func invalidEntities(format string, args ...any) error {
	return web.Errorf(http.StatusBadRequest, "invalid_entities", format, args...)
}

// UnmarshalJSON reads the entities object, keeping the column order.
func (es *Entities) UnmarshalJSON(data []byte) error {
	*es = nil
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return invalidEntities("entities must be an object mapping entity key names to lists of keys")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalidEntities("entities: malformed JSON")
		}
		name, _ := tok.(string)
		if seen[name] {
			return invalidEntities("entities: %s appears twice", quote(name))
		}
		seen[name] = true
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return invalidEntities("entities[%s] must be a list of keys", quote(name))
		}
		col := EntityColumn{Name: name}
		for dec.More() {
			if len(col.Keys) == maxKeysDecoded {
				return invalidEntities("entities[%s]: more than %d keys", quote(name), maxKeysDecoded)
			}
			tok, err := dec.Token()
			if err != nil {
				return invalidEntities("entities[%s]: malformed JSON", quote(name))
			}
			switch v := tok.(type) {
			case string:
				col.Keys, col.raw = append(col.Keys, v), append(col.raw, v)
			case json.Number:
				if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
					return invalidEntities("entities[%s][%d] must be a string or an integer", quote(name), len(col.Keys))
				}
				col.Keys, col.raw = append(col.Keys, string(v)), append(col.raw, v)
			default:
				return invalidEntities("entities[%s][%d] must be a string or an integer", quote(name), len(col.Keys))
			}
		}
		if _, err := dec.Token(); err != nil { // ]
			return invalidEntities("entities: malformed JSON")
		}
		*es = append(*es, col)
	}
	if _, err := dec.Token(); err != nil { // }
		return invalidEntities("entities: malformed JSON")
	}
	return nil
}

// Response is Feast's answer: one result per column, the entity key
// columns first, then the features in request order; row i of every
// result belongs to entity row i.
type Response struct {
	Metadata Metadata `json:"metadata"`
	Results  []Result `json:"results"`
}

// Metadata names the result columns.
type Metadata struct {
	FeatureNames []string `json:"feature_names"`
}

// Result is one column: values (typed JSON: numbers, strings, booleans),
// statuses (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE) and event timestamps
// (RFC 3339, UTC; 1970-01-01T00:00:00Z when there is none). A value that
// is not PRESENT is the feature's default.
type Result struct {
	Values          []any    `json:"values"`
	Statuses        []string `json:"statuses"`
	EventTimestamps []string `json:"event_timestamps"`
}

var epoch = time.Unix(0, 0).UTC().Format(time.RFC3339)

func timestamp(t time.Time) string {
	if t.IsZero() {
		return epoch
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// ViewsResponse is the body of GET {prefix}/feature-views.
type ViewsResponse struct {
	Views []ViewBody `json:"views"`
}

// ViewBody is a view definition.
type ViewBody struct {
	Name            string        `json:"name"`
	Description     string        `json:"description,omitempty"`
	Entity          string        `json:"entity"`
	TTLSeconds      int64         `json:"ttl_seconds"` // 0: values never get too old
	TimestampColumn string        `json:"timestamp_column,omitempty"`
	Features        []FeatureBody `json:"features"`
}

// FeatureBody is a feature definition.
type FeatureBody struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Default     any    `json:"default"` // a number, string or boolean, per type
	Description string `json:"description,omitempty"`
}

func viewBody(v *features.View) ViewBody {
	b := ViewBody{Name: v.Name, Description: v.Description, Entity: v.Entity, TTLSeconds: int64(v.TTL / time.Second),
		TimestampColumn: v.TimestampColumn, Features: make([]FeatureBody, len(v.Features))}
	for i, f := range v.Features {
		b.Features[i] = FeatureBody{Name: f.Name, Type: f.Type.String(), Default: f.Default.Any(), Description: f.Description}
	}
	return b
}

// quote bounds and quotes request text repeated in error messages.
func quote(s string) string {
	if len(s) > 80 {
		s = strings.ToValidUTF8(s[:80], "") + "…"
	}
	return strconv.Quote(s)
}

// mapError turns domain errors into HTTP errors with client-safe messages.
func mapError(err error) error {
	var we *web.Error
	switch {
	case errors.As(err, &we):
		return we
	case errors.Is(err, features.ErrUnknownView):
		return &web.Error{Status: http.StatusUnprocessableEntity, Code: "unknown_view", Message: err.Error(), Cause: err}
	case errors.Is(err, features.ErrUnknownFeature):
		return &web.Error{Status: http.StatusUnprocessableEntity, Code: "unknown_feature", Message: err.Error(), Cause: err}
	case errors.Is(err, features.ErrInvalidEntity):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_entity", Message: err.Error(), Cause: err}
	}
	return err
}
