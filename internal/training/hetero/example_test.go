package hetero_test

import (
	"context"
	"fmt"
	"log"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// A guest and one host train in one process over an in-memory pipe; in a
// deployment each side runs on its own node with a Transport over mTLS.
func Example() {
	guestTable, hostTables, _, err := dataset.Synthetic(dataset.SyntheticConfig{Rows: 3000, GuestFeatures: 4, HostFeatures: []int{3}, Seed: 1, Signal: 2})
	if err != nil {
		log.Fatal(err)
	}
	// Both tables must list the same customers in the same order: the
	// PSI result, applied with Table.Align on each side.
	toHost, toGuest := hetero.Pipe(16)
	host, err := hetero.NewHost(hetero.HostConfig{Name: "telecom"}, hostTables[0], toGuest)
	if err != nil {
		log.Fatal(err)
	}
	cfg := lr.DefaultConfig()
	cfg.Epochs = 3
	guest, err := hetero.NewGuest(hetero.GuestConfig{ModelID: "risk-lr", Version: "1", Train: cfg, Split: dataset.DefaultSplit()},
		guestTable, []hetero.HostPeer{{Name: "telecom", Transport: toHost}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	hostDone := make(chan *hetero.HostModel, 1)
	go func() {
		hm, err := host.Run(ctx)
		if err != nil {
			log.Print(err)
		}
		hostDone <- hm
	}()
	gm, err := guest.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	hm := <-hostDone
	fmt.Println(gm.ModelID, gm.Version, hm.ModelID, hm.Version)
	fmt.Println(len(gm.Weights), "guest weights,", len(hm.Weights), "host weights")
	fmt.Println("test AUC above 0.7:", gm.Metrics.Test.AUC > 0.7)
	// Output:
	// risk-lr 1 risk-lr 1
	// 4 guest weights, 3 host weights
	// test AUC above 0.7: true
}
