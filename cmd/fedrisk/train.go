package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
)

// newTrainCmd is `fedrisk train`: training jobs through this node's
// training API (mounted on the serving listener).
func newTrainCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Start and inspect federated training jobs through this node's training API",
		Long: `Start and inspect hetero logistic-regression training jobs through this node's
training API (default http://127.0.0.1:7003, --server or FEDRISK_TRAIN_URL).

Both parties' files must already be aligned (the PSI result applied on each side),
and are given relative to the node's data directory. The host's operator first
starts a host job for the guest (fedrisk train start --host-file F --peer GUEST),
then the guest starts its job. Jobs are kept in memory: they do not survive a
restart of the node.`,
	}
	cf := addClientFlags(cmd, lookup, "http://127.0.0.1:7003", "FEDRISK_TRAIN_URL")
	cmd.AddCommand(newTrainStartCmd(cf, stdout, stderr), newTrainStatusCmd(cf, stdout))
	return cmd
}

func newTrainStartCmd(cf *clientFlags, stdout, stderr io.Writer) *cobra.Command {
	var (
		peer, guestFile, hostFile, modelID string
		epochs                             int
		wait, quiet                        bool
		poll                               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "start --peer NAME (--guest-file F | --host-file F) [--epochs N] [--wait]",
		Short: "Create a training job (guest with --guest-file, host with --host-file)",
		Example: `  fedrisk train start --peer bank --host-file telecom-aligned.csv
  fedrisk train start --peer telecom --guest-file bank-aligned.csv --epochs 20 --wait`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (guestFile == "") == (hostFile == "") {
				return &usageError{fmt.Errorf("give exactly one of --guest-file and --host-file")}
			}
			if peer == "" {
				return &usageError{fmt.Errorf("--peer is required")}
			}
			body := trainjob.CreateBody{Role: trainjob.RoleGuest, Peer: peer, File: guestFile, ModelID: modelID, Epochs: epochs}
			if hostFile != "" {
				body.Role, body.File = trainjob.RoleHost, hostFile
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var j trainjob.JobBody
			if _, err := c.do(cmd.Context(), http.MethodPost, "/train/v1/jobs", body, &j); err != nil {
				return err
			}
			if wait {
				if j, err = waitTrainJob(cmd.Context(), c, j.ID, poll, quiet, stderr); err != nil {
					return err
				}
			}
			if err := json.NewEncoder(stdout).Encode(j); err != nil {
				return err
			}
			if wait && j.Status != trainjob.StatusSucceeded {
				return fmt.Errorf("training job %s ended %s: %s", j.ID, j.Status, j.Error)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&peer, "peer", "", "the other party's registered name")
	fs.StringVar(&guestFile, "guest-file", "", "the guest's aligned, labelled CSV (relative to the node's data directory)")
	fs.StringVar(&hostFile, "host-file", "", "the host's aligned CSV (relative to the node's data directory): starts a host job")
	fs.StringVar(&modelID, "model-id", "", "model identifier (guest; default random)")
	fs.IntVar(&epochs, "epochs", 0, "maximum epochs (guest; default the trainer's)")
	fs.BoolVar(&wait, "wait", false, "show progress until the job ends")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines with --wait")
	fs.DurationVar(&poll, "poll", time.Second, "status poll interval with --wait")
	return cmd
}

func newTrainStatusCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "status JOB_ID",
		Short: "Print a training job as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var j trainjob.JobBody
			if _, err := c.do(cmd.Context(), http.MethodGet, "/train/v1/jobs/"+args[0], nil, &j); err != nil {
				return err
			}
			return json.NewEncoder(stdout).Encode(j)
		},
	}
}

func waitTrainJob(ctx context.Context, c *apiClient, id string, poll time.Duration, quiet bool, stderr io.Writer) (trainjob.JobBody, error) {
	last := -1
	for {
		var j trainjob.JobBody
		if _, err := c.do(ctx, http.MethodGet, "/train/v1/jobs/"+id, nil, &j); err != nil {
			return j, err
		}
		if !quiet && len(j.EpochStats) != last {
			last = len(j.EpochStats)
			if last > 0 {
				e := j.EpochStats[last-1]
				fmt.Fprintf(stderr, "epoch %d: validation loss %.4f AUC %.4f KS %.4f (%.1fs)\n", e.Epoch+1, e.Loss, e.AUC, e.KS, e.Seconds)
			}
		}
		if j.Status != trainjob.StatusRunning && j.Status != trainjob.StatusWaiting {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// TrainBenchResult is what `fedrisk bench train --json` prints.
type TrainBenchResult struct {
	Rows           int     `json:"rows"`
	FeaturesGuest  int     `json:"features_guest"`
	FeaturesHost   int     `json:"features_host"`
	Epochs         int     `json:"epochs"`
	Cores          int     `json:"cores"`
	SetupSeconds   float64 `json:"setup_seconds"`
	EpochSeconds   float64 `json:"epoch_seconds"`
	WallSeconds    float64 `json:"wall_seconds"`
	BytesPerEpoch  int64   `json:"bytes_per_epoch"`
	BytesTotal     int64   `json:"bytes_total"`
	AUCFederated   float64 `json:"auc_federated"`
	AUCCentralized float64 `json:"auc_centralized"`
}

type trainBenchOpts struct {
	guestFile, hostFile string
	rows, epochs        int
	synthetic           string
	keep                bool
}

// newBenchTrainCmd is `fedrisk bench train`.
func newBenchTrainCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		o      trainBenchOpts
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Run hetero-LR training between two fedrisk processes over loopback mutual TLS and measure it",
		Long: `Starts a guest and a host node as two processes of this binary on 127.0.0.1 with
development certificates, runs one training job, and reports the time per epoch,
the protocol bytes per epoch (both directions, setup included, divided by the
epochs run), the federated test AUC and, in the same run, the test AUC of the
plaintext trainer on the joined data (the centralised oracle).

The data are the default-credit split (--guest-file, --host-file; --rows keeps the
first rows) or, with --synthetic ROWS,GF,HF, a synthetic set with GF guest and HF
host features.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			progress := stderr
			if asJSON {
				progress = io.Discard
			}
			res, err := benchTrain(cmd.Context(), o, progress)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(stdout).Encode(res)
			}
			fmt.Fprintf(stdout, "hetero LR rows=%d features guest=%d host=%d, %d epochs on %d cores: setup %.2f s, %.2f s/epoch, %.0f s wall\n",
				res.Rows, res.FeaturesGuest, res.FeaturesHost, res.Epochs, res.Cores, res.SetupSeconds, res.EpochSeconds, res.WallSeconds)
			fmt.Fprintf(stdout, "wire: %.2f MB/epoch (%.1f MB total)\n", float64(res.BytesPerEpoch)/1e6, float64(res.BytesTotal)/1e6)
			fmt.Fprintf(stdout, "test AUC federated %.4f, centralised %.4f\n", res.AUCFederated, res.AUCCentralized)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.guestFile, "guest-file", "data/default_credit_hetero_guest.csv", "the guest's labelled CSV")
	fs.StringVar(&o.hostFile, "host-file", "data/default_credit_hetero_host.csv", "the host's CSV (same identifiers)")
	fs.IntVar(&o.rows, "rows", 0, "keep the first rows of the files (0: all)")
	fs.StringVar(&o.synthetic, "synthetic", "", "ROWS,GF,HF: synthetic data instead of the files")
	fs.IntVar(&o.epochs, "epochs", 5, "epochs")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (logs, data, models)")
	return cmd
}

// benchTables returns the aligned guest and host tables.
func benchTables(o trainBenchOpts) (*dataset.Table, *dataset.Table, error) {
	if o.synthetic != "" {
		parts := strings.Split(o.synthetic, ",")
		if len(parts) != 3 {
			return nil, nil, &usageError{fmt.Errorf("--synthetic must be ROWS,GF,HF")}
		}
		var v [3]int
		for i, p := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n < 1 {
				return nil, nil, &usageError{fmt.Errorf("--synthetic must be ROWS,GF,HF with positive integers")}
			}
			v[i] = n
		}
		g, hs, _, err := dataset.Synthetic(dataset.SyntheticConfig{Rows: v[0], GuestFeatures: v[1], HostFeatures: []int{v[2]}, Seed: 1, Signal: 2})
		if err != nil {
			return nil, nil, &usageError{err}
		}
		return g, hs[0], nil
	}
	g, err := dataset.ReadFile(o.guestFile, true)
	if err != nil {
		return nil, nil, err
	}
	h, err := dataset.ReadFile(o.hostFile, false)
	if err != nil {
		return nil, nil, err
	}
	if o.rows > 0 && o.rows < g.Len() {
		idx := make([]int, o.rows)
		for i := range idx {
			idx[i] = i
		}
		g = g.Rows(idx)
	}
	if h, err = h.Align(g.IDs); err != nil {
		return nil, nil, err
	}
	return g, h, nil
}

// centralisedAUC trains the plaintext oracle on the joined data with the
// federated run's split and hyper-parameters and returns its test AUC.
func centralisedAUC(ctx context.Context, g, h *dataset.Table, cfg lr.Config) (float64, error) {
	split := dataset.DefaultSplit()
	gp, _ := dataset.Standardise(split.Apply(g))
	hp, _ := dataset.Standardise(split.Apply(h))
	join := func(pick func(dataset.Parts) *dataset.Table) lr.Data {
		return lr.Data{X: dataset.HStack(pick(gp).X, pick(hp).X), Y: pick(gp).Labels}
	}
	tr := join(func(p dataset.Parts) *dataset.Table { return p.Train })
	va := join(func(p dataset.Parts) *dataset.Table { return p.Validation })
	te := join(func(p dataset.Parts) *dataset.Table { return p.Test })
	m, _, err := lr.Train(ctx, tr, va, cfg)
	if err != nil {
		return 0, err
	}
	return lr.Evaluate(m.Logits(te.X), te.Y).AUC, nil
}

func writeTable(path string, t *dataset.Table) error {
	var b bytes.Buffer
	if err := dataset.WriteCSV(&b, t); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

func benchTrain(ctx context.Context, o trainBenchOpts, progress io.Writer) (TrainBenchResult, error) {
	res := TrainBenchResult{Epochs: o.epochs, Cores: runtime.GOMAXPROCS(0)}
	if o.epochs < 1 || o.epochs > lr.MaxEpochs {
		return res, &usageError{fmt.Errorf("--epochs must be 1..%d", lr.MaxEpochs)}
	}
	g, h, err := benchTables(o)
	if err != nil {
		return res, err
	}
	res.Rows, res.FeaturesGuest, res.FeaturesHost = g.Len(), len(g.Features), len(h.Features)
	dir, err := os.MkdirTemp("", "fedrisk-bench-train-")
	if err != nil {
		return res, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(progress, "working directory:", dir)
	}
	if err := writeTable(filepath.Join(dir, "bank", "guest.csv"), g); err != nil {
		return res, err
	}
	if err := writeTable(filepath.Join(dir, "partner", "host.csv"), h); err != nil {
		return res, err
	}

	pair, err := startPair(ctx, dir, "serving", false)
	if err != nil {
		return res, err
	}
	defer pair.stop()
	gc, hc := pair.guestAPI, pair.hostAPI
	fmt.Fprintf(progress, "training on %d rows, %d+%d features, %d epochs\n", res.Rows, res.FeaturesGuest, res.FeaturesHost, o.epochs)
	start := time.Now()
	var hj, gj trainjob.JobBody
	if _, err := hc.do(ctx, http.MethodPost, "/train/v1/jobs", trainjob.CreateBody{Role: trainjob.RoleHost, Peer: "bank", File: "host.csv"}, &hj); err != nil {
		return res, fmt.Errorf("host job: %w", err)
	}
	if _, err := gc.do(ctx, http.MethodPost, "/train/v1/jobs", trainjob.CreateBody{Peer: "partner", File: "guest.csv", Epochs: o.epochs}, &gj); err != nil {
		return res, fmt.Errorf("guest job: %w", err)
	}
	final, err := waitTrainJob(ctx, gc, gj.ID, 100*time.Millisecond, progress == io.Discard, progress)
	if err != nil {
		return res, err
	}
	res.WallSeconds = time.Since(start).Seconds()
	if final.Status != trainjob.StatusSucceeded {
		return res, fmt.Errorf("guest job ended %s: %s", final.Status, final.Error)
	}
	res.Epochs = len(final.EpochStats)
	sum := 0.0
	for _, e := range final.EpochStats {
		sum += e.Seconds
	}
	if res.Epochs > 0 {
		res.EpochSeconds = sum / float64(res.Epochs)
		res.BytesTotal = final.BytesSent + final.BytesReceived
		res.BytesPerEpoch = res.BytesTotal / int64(res.Epochs)
	}
	if final.Started != nil {
		res.SetupSeconds = final.Started.Sub(final.Created).Seconds()
	}
	if final.Test != nil {
		res.AUCFederated = final.Test.AUC
	}
	fmt.Fprintln(progress, "training the centralised oracle")
	cfg := lr.DefaultConfig()
	cfg.Epochs = o.epochs
	if res.AUCCentralized, err = centralisedAUC(ctx, g, h, cfg); err != nil {
		return res, err
	}
	return res, nil
}
