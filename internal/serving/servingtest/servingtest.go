// Package servingtest helps test federated scoring with real models: an
// in-memory serving.Models, and a hetero-LR model trained over hetero.Pipe
// on rows of the bundled default-credit data.
package servingtest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Models is an in-memory serving.Models: halves by (id, version), labels
// by (id, label).
type Models struct {
	mu     sync.Mutex
	guests map[[2]string]*hetero.GuestModel
	hosts  map[[2]string]*hetero.HostModel
	labels map[[2]string]string
}

var _ serving.Models = (*Models)(nil)

// NewModels returns an empty Models.
func NewModels() *Models {
	return &Models{guests: map[[2]string]*hetero.GuestModel{}, hosts: map[[2]string]*hetero.HostModel{}, labels: map[[2]string]string{}}
}

// AddGuest adds a guest half and points labels at it.
func (m *Models) AddGuest(g *hetero.GuestModel, labels ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.guests[[2]string{g.ModelID, g.Version}] = g
	for _, l := range labels {
		m.labels[[2]string{g.ModelID, l}] = g.Version
	}
}

// AddHost adds a host half.
func (m *Models) AddHost(h *hetero.HostModel) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hosts[[2]string{h.ModelID, h.Version}] = h
}

// GuestModel implements serving.Models.
func (m *Models) GuestModel(_ context.Context, id, ref string) (*hetero.GuestModel, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ref == "" {
		ref = "stable"
	}
	version := ref
	if v, ok := m.labels[[2]string{id, ref}]; ok {
		version = v
	}
	g, ok := m.guests[[2]string{id, version}]
	if !ok {
		return nil, "", fmt.Errorf("guest half: %w", serving.ErrModelNotFound)
	}
	return g, version, nil
}

// HostModel implements serving.Models.
func (m *Models) HostModel(_ context.Context, id, version string) (*hetero.HostModel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.hosts[[2]string{id, version}]
	if !ok {
		return nil, fmt.Errorf("host half: %w", serving.ErrModelNotFound)
	}
	return h, nil
}

// Credit holds the bundled credit data, aligned on the id join.
type Credit struct {
	Guest, Host *dataset.Table
}

// LoadCredit reads data/default_credit_hetero_{guest,host}.csv from dir and
// aligns them on their common ids.
func LoadCredit(dir string) (*Credit, error) {
	g, err := dataset.ReadFile(filepath.Join(dir, "default_credit_hetero_guest.csv"), true)
	if err != nil {
		return nil, err
	}
	h, err := dataset.ReadFile(filepath.Join(dir, "default_credit_hetero_host.csv"), false)
	if err != nil {
		return nil, err
	}
	ids := dataset.CommonIDs(g, h)
	if g, err = g.Align(ids); err != nil {
		return nil, err
	}
	if h, err = h.Align(ids); err != nil {
		return nil, err
	}
	return &Credit{Guest: g, Host: h}, nil
}

// First returns the first n rows of both tables.
func (c *Credit) First(n int) *Credit {
	n = min(n, c.Guest.Len())
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return &Credit{Guest: c.Guest.Rows(idx), Host: c.Host.Rows(idx)}
}

// Train trains a hetero-LR model (guest and one host named host) over an
// in-memory pipe, with the given epochs.
func Train(ctx context.Context, c *Credit, modelID, version, host string, epochs int) (*hetero.GuestModel, *hetero.HostModel, error) {
	toHost, toGuest := hetero.Pipe(64)
	defer toHost.Close()
	h, err := hetero.NewHost(hetero.HostConfig{Name: host}, c.Host, toGuest)
	if err != nil {
		return nil, nil, err
	}
	cfg := lr.DefaultConfig()
	cfg.Epochs = epochs
	g, err := hetero.NewGuest(hetero.GuestConfig{ModelID: modelID, Version: version, Train: cfg}, c.Guest, []hetero.HostPeer{{Name: host, Transport: toHost}})
	if err != nil {
		return nil, nil, err
	}
	type res struct {
		m   *hetero.HostModel
		err error
	}
	done := make(chan res, 1)
	go func() {
		m, err := h.Run(ctx)
		done <- res{m, err}
	}()
	gm, gerr := g.Run(ctx)
	hr := <-done
	if err := errors.Join(gerr, hr.err); err != nil {
		return nil, nil, err
	}
	return gm, hr.m, nil
}
