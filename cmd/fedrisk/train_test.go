package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
)

// runTrain runs `fedrisk train ...` against server.
func runTrain(t *testing.T, server string, args ...string) (error, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	lookup := func(k string) (string, bool) {
		if k == "FEDRISK_TRAIN_URL" {
			return server, true
		}
		return "", false
	}
	cmd := newTrainCmd(lookup, &out, &errb)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(context.Background())
	return err, out.String(), errb.String()
}

// startTrainNodes starts the training services of a guest "bank" and a
// host "telecom" in process, over plain HTTP on loopback.
func startTrainNodes(t *testing.T) (guestURL, hostURL, guestDir, hostDir string) {
	t.Helper()
	servers := map[string]*httptest.Server{}
	muxes := map[string]*http.ServeMux{}
	for _, p := range []string{"bank", "telecom"} {
		muxes[p] = http.NewServeMux()
		mux := muxes[p]
		servers[p] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { mux.ServeHTTP(w, r) }))
		t.Cleanup(servers[p].Close)
	}
	dirs := map[string]string{}
	for p, other := range map[string]string{"bank": "telecom", "telecom": "bank"} {
		dirs[p] = t.TempDir()
		svc, err := trainjob.New(context.Background(), trainjob.Deps{Config: config.Config{Party: p, DataDir: dirs[p],
			Peers: []config.Peer{{Name: other, URL: servers[other].URL}}}})
		if err != nil {
			t.Fatal(err)
		}
		svc.Mount(muxes[p])
		t.Cleanup(func() { _ = svc.Close() })
	}
	return servers["bank"].URL, servers["telecom"].URL, dirs["bank"], dirs["telecom"]
}

func TestTrainStartCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	g, h, err := benchTables(trainBenchOpts{synthetic: "1500,3,2"})
	if err != nil {
		t.Fatal(err)
	}
	gURL, hURL, gDir, hDir := startTrainNodes(t)
	if err := writeTable(filepath.Join(gDir, "g.csv"), g); err != nil {
		t.Fatal(err)
	}
	if err := writeTable(filepath.Join(hDir, "h.csv"), h); err != nil {
		t.Fatal(err)
	}

	var ue *usageError
	if err, _, _ := runTrain(t, gURL, "start", "--peer", "telecom"); !errors.As(err, &ue) {
		t.Errorf("no file: %v, want a usage error", err)
	}
	if err, _, _ := runTrain(t, gURL, "start", "--peer", "telecom", "--guest-file", "g.csv", "--host-file", "h.csv"); !errors.As(err, &ue) {
		t.Errorf("two files: %v, want a usage error", err)
	}
	if err, _, _ := runTrain(t, gURL, "start", "--peer", "telecom", "--guest-file", "missing.csv"); err == nil || !strings.Contains(err.Error(), "invalid_request") {
		t.Errorf("missing file: %v", err)
	}

	err, out, _ := runTrain(t, hURL, "start", "--peer", "bank", "--host-file", "h.csv")
	if err != nil {
		t.Fatal(err)
	}
	var hj trainjob.JobBody
	if err := json.Unmarshal([]byte(out), &hj); err != nil || hj.Status != trainjob.StatusWaiting || hj.Role != "host" {
		t.Fatalf("host job %s (%v)", out, err)
	}
	err, out, progress := runTrain(t, gURL, "start", "--peer", "telecom", "--guest-file", "g.csv", "--epochs", "2", "--wait", "--poll", "20ms")
	if err != nil {
		t.Fatalf("%v\n%s", err, progress)
	}
	var gj trainjob.JobBody
	if err := json.Unmarshal([]byte(out), &gj); err != nil {
		t.Fatal(err)
	}
	if gj.Status != trainjob.StatusSucceeded || gj.EpochsDone != 2 || gj.Test == nil || gj.Test.AUC < 0.6 || gj.ModelPath == "" {
		t.Errorf("guest job %+v", gj)
	}
	if !strings.Contains(progress, "epoch 2: validation loss") {
		t.Errorf("progress %q", progress)
	}
	err, out, _ = runTrain(t, hURL, "status", hj.ID)
	if err != nil || !strings.Contains(out, `"status":"succeeded"`) {
		t.Errorf("host status %v %s", err, out)
	}
}

func TestBenchTrainPieces(t *testing.T) {
	for _, bad := range []string{"1,2", "x,1,1", "10,0,1"} {
		var ue *usageError
		if _, _, err := benchTables(trainBenchOpts{synthetic: bad}); !errors.As(err, &ue) {
			t.Errorf("--synthetic %s: %v, want a usage error", bad, err)
		}
	}
	g, h, err := benchTables(trainBenchOpts{guestFile: "../../data/default_credit_hetero_guest.csv", hostFile: "../../data/default_credit_hetero_host.csv", rows: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if g.Len() != 2000 || h.Len() != 2000 || g.IDs[1999] != h.IDs[1999] {
		t.Fatalf("tables %d %d", g.Len(), h.Len())
	}
	cfg := lr.DefaultConfig()
	cfg.Epochs = 3
	auc, err := centralisedAUC(context.Background(), g, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if auc < 0.65 || auc > 1 {
		t.Errorf("centralised AUC %.4f", auc)
	}
	if _, err := benchTrain(context.Background(), trainBenchOpts{epochs: 0}, nil); err == nil {
		t.Error("0 epochs accepted")
	}
	_ = newBenchTrainCmd(nil, nil) // registered by bench.go
}
