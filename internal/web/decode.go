package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
)

// DecodeJSON reads exactly one JSON object from the request body into v,
// rejecting unknown fields, trailing data, a wrong content type and bodies
// over the limit set by the middleware. The returned error is an *Error
// ready for WriteError.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "content type must be application/json")
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeError(err)
		}
		return Errorf(http.StatusBadRequest, "invalid_json", "request body must hold a single JSON object")
	}
	return nil
}

func decodeError(err error) error {
	var (
		mbe  *http.MaxBytesError
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		werr *Error
	)
	switch {
	case errors.As(err, &werr):
		return werr
	case errors.As(err, &mbe):
		return Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, "invalid_json", "request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, "invalid_json", "request body is truncated JSON")
	case errors.As(err, &syn):
		return Errorf(http.StatusBadRequest, "invalid_json", "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return Errorf(http.StatusBadRequest, "invalid_field", "field %q must be %s", typ.Field, typ.Type)
		}
		return Errorf(http.StatusBadRequest, "invalid_json", "request body must be a JSON %s", typ.Type)
	}
	// json reports an unknown field as `json: unknown field "x"`.
	if msg := err.Error(); len(msg) > 20 && msg[:20] == "json: unknown field " {
		return Errorf(http.StatusBadRequest, "unknown_field", "unknown field %s", msg[20:])
	}
	return &Error{Status: http.StatusBadRequest, Code: "invalid_json", Message: fmt.Sprintf("invalid JSON: %v", err)}
}
