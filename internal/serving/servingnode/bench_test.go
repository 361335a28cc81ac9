package servingnode_test

import (
	"net/http"
	"testing"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
)

// BenchmarkScore: one federated score over loopback mutual TLS (guest and
// host in this process, SQLite, in-memory cache, Laplace noise with the
// release reused): the hot path of POST /score.
func BenchmarkScore(b *testing.B) {
	f := newFederation(b)
	g, _ := f.pair(b, options{}, options{scoring: func(s *config.Scoring) { s.Noise = "laplace" }})
	tok := g.token(b, g.grant(b, f.ids[0]).ID)
	body := servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if st, code := g.call(b, "POST", g.url+"/score", body, nil); st != http.StatusOK {
				b.Errorf("score: %d %s", st, code)
				return
			}
		}
	})
}
