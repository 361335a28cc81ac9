package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobnode"
)

// runTrain runs `fedrisk train ARGS` through run(), as main does, against
// server; it returns the exit code, stdout and stderr.
func runTrain(t *testing.T, server string, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, map[string]string{"FEDRISK_TRAIN_URL": server}, append([]string{"train"}, args...)...)
}

// startTrainNodes starts the training services of a guest "bank" and a
// host "telecom" in process, over plain HTTP on loopback, each with its
// jobs in a SQLite database.
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
		db := sqldbtest.OpenSQLite(t, true)
		cfg := config.Default()
		cfg.Party, cfg.DataDir, cfg.Peers = p, dirs[p], []config.Peer{{Name: other, URL: servers[other].URL}}
		res := nodetest.Resources(t, cfg, nodetest.Options{DB: db})
		svc, err := trainjobnode.New(context.Background(), node.TrainingDeps(nodetest.Env(res, nil), nil))
		if err != nil {
			t.Fatal(err)
		}
		svc.Mount(muxes[p])
		t.Cleanup(func() { _ = svc.Close() })
	}
	return servers["bank"].URL, servers["telecom"].URL, dirs["bank"], dirs["telecom"]
}

func TestTrainCLI(t *testing.T) {
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

	// Bad command lines: exit 2, one clear line, nothing created.
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"start", "--peer", "telecom"}, "exactly one of --file"},
		{"two files", []string{"start", "--peer", "telecom", "--file", "g.csv", "--host-file", "h.csv"}, "exactly one of --file"},
		{"no peer", []string{"start", "--file", "g.csv"}, "--peer is required"},
		{"algo", []string{"start", "--peer", "telecom", "--file", "g.csv", "--algo", "secureboost"}, `--algo "secureboost" is not supported`},
		{"role", []string{"start", "--peer", "telecom", "--file", "g.csv", "--role", "judge"}, "--role must be guest or host"},
		{"host hyper-parameters", []string{"start", "--peer", "bank", "--file", "h.csv", "--role", "host", "--epochs", "3"}, "--epochs is the guest's"},
		{"status args", []string{"status"}, "accepts 1 arg"},
		{"list limit", []string{"list", "--limit", "0"}, "--limit must be 1..1000"},
		{"unknown flag", []string{"start", "--nope"}, "unknown flag"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runTrain(t, gURL, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
	// Bad requests the API refuses: exit 1 with its reason.
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"start", "--peer", "telecom", "--file", "missing.csv"}, "invalid_request (HTTP 400)"},
		{"outside the data dir", []string{"start", "--peer", "telecom", "--file", "../g.csv"}, "below the node's data directory"},
		{"unknown peer", []string{"start", "--peer", "http://127.0.0.1:1", "--file", "g.csv"}, "no configured peer has the URL"},
		{"psi job", []string{"start", "--peer", "telecom", "--file", "g.csv", "--psi-job", "psi_00000000000000000000"}, "no PSI job"},
		{"hyper-parameters", []string{"start", "--peer", "telecom", "--file", "g.csv", "--learning-rate", "-1"}, "learning rate"},
		{"no such job", []string{"status", "tj-000000000000000000000000"}, "job_not_found"},
		{"cancel no such job", []string{"cancel", "nope"}, "job_not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runTrain(t, gURL, tt.args...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tt.want)
			}
		})
	}
	if code, out, _ := runTrain(t, gURL, "list", "--json"); code != 0 || !strings.Contains(out, `"jobs": []`) {
		t.Fatalf("bad requests created jobs: %d %s", code, out)
	}

	// The host's operator starts the host job: it returns at once.
	code, out, stderr := runTrain(t, hURL, "start", "--role", "host", "--peer", "bank", "--file", "h.csv", "--json")
	if code != 0 {
		t.Fatal(stderr)
	}
	var hj trainjobapi.JobBody
	if err := json.Unmarshal([]byte(out), &hj); err != nil || hj.Status != trainjob.StatusWaiting || hj.Role != "host" || hj.Algo != trainjob.AlgoHeteroLR {
		t.Fatalf("host job %s (%v)", out, err)
	}
	// The guest follows its job until it ends.
	code, out, progress := runTrain(t, gURL, "start", "--peer", "telecom", "--file", "g.csv", "--epochs", "2", "--l2", "0",
		"--patience", "0", "--model-id", "risk", "--poll", "20ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, progress)
	}
	var gj trainjobapi.JobBody
	if err := json.Unmarshal([]byte(out), &gj); err != nil {
		t.Fatal(err)
	}
	if gj.Status != trainjob.StatusSucceeded || gj.EpochsDone != 2 || gj.Test == nil || gj.Test.AUC < 0.6 || gj.ModelPath == "" ||
		gj.ModelID != "risk" || gj.ModelVersion != "1" || gj.Params == nil || gj.Params.L2 != 0 || gj.Params.Patience != 0 || gj.PeerJob != hj.ID {
		t.Errorf("guest job %+v", gj)
	}
	if !strings.Contains(progress, "epoch 2/2: validation loss") || !strings.Contains(progress, "training job "+gj.ID) {
		t.Errorf("progress %q", progress)
	}
	code, out, _ = runTrain(t, hURL, "status", hj.ID)
	if code != 0 || !strings.Contains(out, "job "+hj.ID+": succeeded (host with bank, hetero-lr)") || !strings.Contains(out, "model risk version 1") {
		t.Errorf("host status %d %s", code, out)
	}
	code, out, _ = runTrain(t, gURL, "list")
	if code != 0 || !strings.Contains(out, gj.ID) || !strings.Contains(out, "risk@1") || !strings.Contains(out, "2/2") {
		t.Errorf("list %d\n%s", code, out)
	}
	code, out, _ = runTrain(t, gURL, "list", "--status", "failed", "--json")
	if code != 0 || strings.Contains(out, gj.ID) {
		t.Errorf("list --status failed %d\n%s", code, out)
	}
	if code, _, stderr := runTrain(t, gURL, "cancel", gj.ID); code != 1 || !strings.Contains(stderr, "job_final") {
		t.Errorf("cancel a finished job: %d %q", code, stderr)
	}

	// A detached guest job whose host has no job waiting fails; cancel a
	// waiting host job.
	code, out, _ = runTrain(t, gURL, "start", "--peer", "telecom", "--file", "g.csv", "--detach", "--json")
	if code != 0 || !strings.Contains(out, `"status": "running"`) {
		t.Errorf("detach %d %s", code, out)
	}
	code, out, _ = runTrain(t, hURL, "start", "--host-file", "h.csv", "--peer", "bank", "--json")
	if err := json.Unmarshal([]byte(out), &hj); code != 0 || err != nil {
		t.Fatal(out)
	}
	code, out, _ = runTrain(t, hURL, "cancel", hj.ID, "--json")
	if code != 0 || !strings.Contains(out, `"status": "cancelled"`) {
		t.Errorf("cancel %d %s", code, out)
	}
}

// TestTrainCLIServe runs the real binary's training API (`fedrisk serve
// --services serving`) and talks to it with the CLI.
func TestTrainCLIServe(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	_, addrs := startServe(t, "serve --services serving --serving-addr 127.0.0.1:0 --party bank --peer telecom=http://127.0.0.1:1 --data-dir "+t.TempDir())
	url := "http://" + addrs["serving"]
	if code, out, stderr := runTrain(t, url, "list", "--json"); code != 0 || !strings.Contains(out, `"jobs": []`) {
		t.Errorf("list: %d %s %s", code, out, stderr)
	}
	if code, _, stderr := runTrain(t, url, "start", "--peer", "telecom", "--file", "none.csv"); code != 1 || !strings.Contains(stderr, "invalid_request") {
		t.Errorf("start: %d %s", code, stderr)
	}
	if code, _, stderr := runTrain(t, url, "status", "tj-000000000000000000000000"); code != 1 || !strings.Contains(stderr, "job_not_found") {
		t.Errorf("status: %d %s", code, stderr)
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
	auc, err := lr.CentralizedAUC(context.Background(), g, h, cfg)
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
