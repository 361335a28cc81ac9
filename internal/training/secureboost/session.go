package secureboost

import (
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"sync"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// Protocol names this protocol and version in Hello.
const Protocol = "fedrisk-hetero-secureboost/1"

// MaxHosts bounds the hosts of one run.
const MaxHosts = 16

// hello is the guest's proposal to one host.
type hello struct {
	Protocol  string        `json:"protocol"`
	Session   string        `json:"session"`
	ModelID   string        `json:"model_id"`
	Version   string        `json:"version"`
	HostIndex int           `json:"host_index"`
	Hosts     int           `json:"hosts"`
	Params    Params        `json:"params"`
	Train     Config        `json:"train"`
	Split     dataset.Split `json:"split"`
	Rows      int           `json:"rows"`
	IDDigest  string        `json:"id_digest"`
	// StartTree is the first tree of this session: 0, or the tree after
	// the checkpoint both parties resume from.
	StartTree int `json:"start_tree,omitempty"`
}

// helloReply is a host's answer.
type helloReply struct {
	Protocol   string `json:"protocol"`
	Session    string `json:"session"`
	Features   int    `json:"features"`
	Bins       []int  `json:"bins"` // bins of each feature (its quantile binning)
	Train      int    `json:"train_rows"`
	Validation int    `json:"validation_rows"`
	Test       int    `json:"test_rows"`
	IDDigest   string `json:"id_digest"`
	// NoiseBits bounds the noise this host adds to every released sum (0:
	// none); NoiseSigma is its standard deviation in gradient units.
	NoiseBits  int     `json:"noise_bits,omitempty"`
	NoiseSigma float64 `json:"noise_sigma,omitempty"`
	// Splits is the number of splits the host holds (from its checkpoint
	// when resuming).
	Splits int `json:"splits"`
}

// setup is the guest's packing and noise plan.
type setup struct {
	Budget budget `json:"budget"`
}

// finish tells a host how many trees the model keeps.
type finish struct {
	Trees  int `json:"trees"`
	Splits int `json:"splits"` // the host's splits in those trees
}

// finishReply carries the digest of the host's half, for the guest's card.
type finishReply struct {
	ModelDigest string `json:"model_digest"`
	Splits      int    `json:"splits"`
}

// TreeEnd flags.
const (
	flagKeep = 1 << 0
	flagStop = 1 << 1
)

// idDigest hashes the aligned identifiers, so both parties can check that
// their rows line up before training. Both already hold these identifiers
// (the PSI result), so the digest discloses nothing new.
func idDigest(ids []string) string {
	h := sha256.New()
	h.Write([]byte("fedrisk-secureboost ids v1\x00"))
	var n [8]byte
	for _, id := range ids {
		l := len(id)
		for i := range n {
			n[i] = byte(l >> (8 * (7 - i)))
		}
		h.Write(n[:])
		h.Write([]byte(id))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// chunks splits rows into consecutive runs of at most size.
func chunks(rows []int32, size int) [][]int32 {
	var out [][]int32
	for lo := 0; lo < len(rows); lo += size {
		out = append(out, rows[lo:min(lo+size, len(rows))])
	}
	return out
}

// parallel runs f(i, w) for i in 0..n−1 on at most workers goroutines (w
// is the goroutine's index, for per-worker state) and returns the first
// error.
func parallel(n, workers int, f func(i, w int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			if err := f(i, 0); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := f(i, w); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
