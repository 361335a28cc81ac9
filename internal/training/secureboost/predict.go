package secureboost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
)

// Online scoring. The guest asks each host once per score for its routing
// bits for the subject (RouteRequest → RouteResponse), then walks the
// trees itself (GuestModel.Logit or Explain). A host answers with one bit
// per split of its half — left or right at every node it owns, whether or
// not the subject's path reaches it, so the host learns nothing of the
// path — and the guest learns those bits: for each feature the host's
// splits use, the interval between consecutive thresholds that holds the
// subject's value. RouteRandomised releases them through randomised
// response instead; see the package doc on the privacy budget.

// MaxRouteSplits bounds the splits of one host's answer.
const MaxRouteSplits = MaxTrees << MaxDepth

// RouteRequest asks a host for its routing bits of one subject. The
// serving layer adds the subject's reference and consent token around it.
type RouteRequest struct {
	ModelID string `json:"model_id"`
	Version string `json:"version"`
}

// RouteResponse is a host's answer: bit k (LSB first) of Bits is 1 when
// split k sends the subject left.
type RouteResponse struct {
	ModelID string `json:"model_id"`
	Version string `json:"version"`
	Splits  int    `json:"splits"`
	Bits    []byte `json:"bits"` // base64 in JSON
	// Epsilon is the per-feature ε of the randomised response the bits
	// went through (0: exact bits).
	Epsilon float64 `json:"epsilon,omitempty"`
}

// DecodeRouteRequest parses a request strictly.
func DecodeRouteRequest(b []byte) (RouteRequest, error) {
	var r RouteRequest
	if len(b) > 4096 {
		return r, fmt.Errorf("%w: route request of %d bytes", ErrOversized, len(b))
	}
	if err := jsonPayload(b, &r); err != nil {
		return r, fmt.Errorf("route request: %w", err)
	}
	if err := checkIDs(r.ModelID, r.Version); err != nil {
		return r, fmt.Errorf("route request: %w", err)
	}
	return r, nil
}

// DecodeRouteResponse parses a response strictly: sizes, trailing bits,
// ε.
func DecodeRouteResponse(b []byte) (RouteResponse, error) {
	var r RouteResponse
	if len(b) > 4096+MaxRouteSplits/8*2 {
		return r, fmt.Errorf("%w: route response of %d bytes", ErrOversized, len(b))
	}
	if err := jsonPayload(b, &r); err != nil {
		return r, fmt.Errorf("route response: %w", err)
	}
	if err := checkIDs(r.ModelID, r.Version); err != nil {
		return r, fmt.Errorf("route response: %w", err)
	}
	if r.Splits < 0 || r.Splits > MaxRouteSplits || !(r.Epsilon >= 0) || math.IsInf(r.Epsilon, 0) {
		return r, fmt.Errorf("%w: route response of %d splits, ε %v", ErrMalformed, r.Splits, r.Epsilon)
	}
	if r.Bits == nil {
		r.Bits = []byte{}
	}
	if err := checkBitmap(r.Bits, r.Splits); err != nil {
		return r, fmt.Errorf("%w: route response: %v", ErrMalformed, err)
	}
	return r, nil
}

// Answer builds the response to a request for raw features x, exact or
// (epsilon > 0) through randomised response drawn from rnd.
func (m *HostModel) Answer(req RouteRequest, x []float64, epsilon float64, rnd io.Reader) (RouteResponse, error) {
	if req.ModelID != m.ModelID || req.Version != m.Version {
		return RouteResponse{}, fmt.Errorf("%w: routes asked for model %.64q version %.32q, this half is %s %s", ErrMismatch, req.ModelID, req.Version, m.ModelID, m.Version)
	}
	var bits []byte
	var err error
	if epsilon > 0 {
		bits, err = m.RouteRandomised(x, epsilon, rnd)
	} else {
		bits, err = m.Route(x)
	}
	if err != nil {
		return RouteResponse{}, err
	}
	return RouteResponse{ModelID: m.ModelID, Version: m.Version, Splits: len(m.Splits), Bits: bits, Epsilon: epsilon}, nil
}

// Routes checks a host's response against the guest's half and returns
// its bits for Logit and Explain.
func (m *GuestModel) Routes(host int, r RouteResponse) ([]byte, error) {
	if host < 0 || host >= len(m.Hosts) {
		return nil, fmt.Errorf("secureboost: host %d of %d", host, len(m.Hosts))
	}
	if r.ModelID != m.ModelID || r.Version != m.Version || r.Splits != m.Hosts[host].Splits {
		return nil, fmt.Errorf("%w: host %d answered for model %.64q version %.32q with %d splits", ErrMismatch, host, r.ModelID, r.Version, r.Splits)
	}
	if err := checkBitmap(r.Bits, r.Splits); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return r.Bits, nil
}

// RouteRandomised returns routing bits through k-ary randomised response,
// feature by feature: the sorted distinct thresholds of a feature's
// splits cut its line into k intervals, the subject's value lies in one,
// and the host reports that interval with probability e^ε/(e^ε + k − 1)
// and each other one with probability 1/(e^ε + k − 1); the bits are those
// of the reported interval, so they stay consistent. Each feature's
// release is ε-differentially private (local model); the whole answer
// costs RouteCost(ε). rnd supplies uniform bytes (crypto/rand.Reader in
// production).
func (m *HostModel) RouteRandomised(x []float64, epsilon float64, rnd io.Reader) ([]byte, error) {
	if !(epsilon > 0) || math.IsInf(epsilon, 0) {
		return nil, fmt.Errorf("secureboost: randomised response needs ε > 0, got %v", epsilon)
	}
	if rnd == nil {
		return nil, errors.New("secureboost: randomised response needs a source of randomness")
	}
	if len(x) != len(m.Features) {
		return nil, fmt.Errorf("secureboost: %d features, the host's half has %d", len(x), len(m.Features))
	}
	cuts := m.featureCuts()
	reported := make(map[int]int, len(cuts))
	for f, c := range cuts {
		truth := sort.SearchFloat64s(c, x[f]) // #{t : t < x}
		k := len(c) + 1
		keep, err := bernoulliExpRatio(rnd, epsilon, k)
		if err != nil {
			return nil, err
		}
		j := truth
		if !keep {
			o, err := uniformBelow(rnd, uint64(k-1))
			if err != nil {
				return nil, err
			}
			j = int(o)
			if j >= truth {
				j++
			}
		}
		reported[f] = j
	}
	out := make([]byte, (len(m.Splits)+7)/8)
	for k, s := range m.Splits {
		// left iff x ≤ t_i iff i ≥ j, with t_i the split's rank.
		if sort.SearchFloat64s(cuts[s.Feature], s.Threshold) >= reported[s.Feature] {
			out[k/8] |= 1 << (k % 8)
		}
	}
	return out, nil
}

// RouteCost returns the ε one randomised answer spends: ε for each
// feature the host's splits use (basic composition over features).
func (m *HostModel) RouteCost(epsilon float64) float64 {
	return epsilon * float64(len(m.featureCuts()))
}

// featureCuts returns the sorted distinct thresholds of each feature the
// splits use.
func (m *HostModel) featureCuts() map[int][]float64 {
	out := map[int][]float64{}
	for _, s := range m.Splits {
		out[s.Feature] = append(out[s.Feature], s.Threshold)
	}
	for f, c := range out {
		sort.Float64s(c)
		u := c[:1]
		for _, v := range c[1:] {
			if v != u[len(u)-1] {
				u = append(u, v)
			}
		}
		out[f] = u
	}
	return out
}

// bernoulliExpRatio returns true with probability e^ε/(e^ε + k − 1), by
// comparing a uniform 53-bit draw (so the probability is exact to 2^−53).
func bernoulliExpRatio(rnd io.Reader, epsilon float64, k int) (bool, error) {
	p := 1 / (1 + float64(k-1)*math.Exp(-epsilon))
	var b [8]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return false, err
	}
	u := float64(binary.LittleEndian.Uint64(b[:])>>11) / (1 << 53)
	return u < p, nil
}

// uniformBelow returns a uniform integer in [0, n) by rejection.
func uniformBelow(rnd io.Reader, n uint64) (uint64, error) {
	if n <= 1 {
		return 0, nil
	}
	limit := math.MaxUint64 - math.MaxUint64%n
	var b [8]byte
	for {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return 0, err
		}
		if v := binary.LittleEndian.Uint64(b[:]); v < limit {
			return v % n, nil
		}
	}
}
