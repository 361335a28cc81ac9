package registryapi

import (
	"encoding/json"
	"time"

	"github.com/fedrisk/fedrisk/internal/serving/registry"
)

// ModelsResponse is GET {prefix}/v1/models.
type ModelsResponse struct {
	Models []ModelBody `json:"models"`
}

// ModelBody is a model with its versions and labels (and, from GET
// {prefix}/v1/models/{id}, its label history).
type ModelBody struct {
	ID       string            `json:"id"`
	Labels   map[string]string `json:"labels"`
	Versions []VersionBody     `json:"versions"`
	History  []ChangeBody      `json:"history,omitempty"`
}

// VersionBody is one half of one version. Card is the model card; Half,
// only when asked for, this party's half document.
type VersionBody struct {
	ModelID      string          `json:"model_id"`
	Version      string          `json:"version"`
	Role         string          `json:"role"`
	Digest       string          `json:"digest"`
	Labels       []string        `json:"labels"`
	Created      time.Time       `json:"created"`
	RegisteredBy string          `json:"registered_by"`
	Card         json.RawMessage `json:"card,omitempty"`
	Half         json.RawMessage `json:"half,omitempty"`
}

// PromoteRequest is the body of POST {prefix}/v1/models/{id}/promote.
// Label defaults to "stable".
type PromoteRequest struct {
	Version string `json:"version"`
	Label   string `json:"label,omitempty"`
}

// RollbackRequest is the body of POST {prefix}/v1/models/{id}/rollback.
// Label defaults to "stable".
type RollbackRequest struct {
	Label string `json:"label,omitempty"`
}

// ChangeBody is a label change: the answer to promote and rollback, and
// one line of a model's history.
type ChangeBody struct {
	ModelID  string    `json:"model_id"`
	Label    string    `json:"label"`
	Action   string    `json:"action"`
	Version  string    `json:"version"`
	Previous string    `json:"previous"`
	Changed  bool      `json:"changed"`
	Actor    string    `json:"actor"`
	At       time.Time `json:"at"`
}

func modelBody(m registry.Model) ModelBody {
	b := ModelBody{ID: m.ID, Labels: m.Labels, Versions: make([]VersionBody, 0, len(m.Versions))}
	if b.Labels == nil {
		b.Labels = map[string]string{}
	}
	for _, e := range m.Versions {
		b.Versions = append(b.Versions, versionBody(e, false))
	}
	for _, c := range m.History {
		b.History = append(b.History, changeBody(c))
	}
	return b
}

func versionBody(e registry.Entry, half bool) VersionBody {
	b := VersionBody{ModelID: e.ModelID, Version: e.Version, Role: e.Role, Digest: e.Digest, Labels: e.Labels,
		Created: e.Created, RegisteredBy: e.RegisteredBy, Card: json.RawMessage(e.Card)}
	if b.Labels == nil {
		b.Labels = []string{}
	}
	if half {
		b.Half = json.RawMessage(e.Half)
	}
	return b
}

func changeBody(c registry.LabelChange) ChangeBody {
	return ChangeBody{ModelID: c.ModelID, Label: c.Label, Action: c.Action, Version: c.Version, Previous: c.Previous,
		Changed: c.Changed(), Actor: c.Actor, At: c.At}
}
