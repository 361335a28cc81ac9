package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
)

// newTrainCmd is `fedrisk train`: training jobs through this node's
// training API (mounted on the serving listener).
func newTrainCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Start, follow, list and cancel federated training jobs through this node's training API",
		Long: `Start and inspect hetero logistic-regression training jobs through this node's
training API (default http://127.0.0.1:7003, --server or FEDRISK_TRAIN_URL).

The guest starts a job with the host's peer name (or URL), its own CSV (--file,
relative to the node's data directory) and, with --psi-job, a finished PSI job in
mode both: each party keeps the rows of its file in the PSI intersection, in one
order. The guest's session then creates the host's job from the host's side of the
same PSI run (the host reads its PSI job's CSV, or --peer-file, below its own data
directory). Without --psi-job both files must already be aligned, and the host's
operator starts a host job first (--role host --file F --peer GUEST).

Jobs are kept in the node's database: a job that was running when a node stopped
resumes from its last finished epoch when the node starts again. Each party
registers its half of the model when the job succeeds.`,
	}
	cf := addClientFlags(cmd, lookup, "http://127.0.0.1:7003", "FEDRISK_TRAIN_URL")
	cmd.AddCommand(newTrainStartCmd(cf, stdout, stderr), newTrainStatusCmd(cf, stdout), newTrainListCmd(cf, stdout),
		newTrainCancelCmd(cf, stdout))
	return cmd
}

func newTrainStartCmd(cf *clientFlags, stdout, stderr io.Writer) *cobra.Command {
	var (
		b                           trainjobapi.CreateBody
		guestFile, hostFile, role   string
		l2                          float64
		patience                    int
		wait, detach, quiet, asJSON bool
		poll                        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "start --peer NAME_OR_URL --file F [--psi-job ID] [--algo hetero-lr] [hyper-parameters]",
		Short: "Create a training job and follow it until it ends (guest; --detach returns at once)",
		Example: `  fedrisk train start --peer partner --psi-job psi_0123456789abcdef0123 --file bank.csv --epochs 20
  fedrisk train start --peer https://partner.example:7003 --file bank-aligned.csv --detach --json
  fedrisk train start --role host --peer bank --file partner-aligned.csv`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			files := 0
			for _, f := range []string{b.File, guestFile, hostFile} {
				if f != "" {
					files++
				}
			}
			switch {
			case files != 1:
				return &usageError{fmt.Errorf("give exactly one of --file, --guest-file and --host-file")}
			case guestFile != "":
				b.File, role = guestFile, nonEmpty(role, trainjob.RoleGuest)
			case hostFile != "":
				b.File, role = hostFile, nonEmpty(role, trainjob.RoleHost)
			}
			if role == "" {
				role = trainjob.RoleGuest
			}
			switch {
			case role != trainjob.RoleGuest && role != trainjob.RoleHost:
				return &usageError{fmt.Errorf("--role must be guest or host")}
			case (guestFile != "" && role != trainjob.RoleGuest) || (hostFile != "" && role != trainjob.RoleHost):
				return &usageError{fmt.Errorf("--guest-file starts a guest job and --host-file a host job: use --file with --role")}
			case b.Peer == "":
				return &usageError{fmt.Errorf("--peer is required")}
			case b.Algo != trainjob.AlgoHeteroLR:
				return &usageError{fmt.Errorf("--algo %q is not supported: the only algorithm is %s", b.Algo, trainjob.AlgoHeteroLR)}
			case wait && detach:
				return &usageError{fmt.Errorf("give at most one of --wait and --detach")}
			case poll <= 0:
				return &usageError{fmt.Errorf("--poll must be positive")}
			}
			b.Role = role
			fs := cmd.Flags()
			if fs.Changed("l2") {
				b.L2 = &l2
			}
			if fs.Changed("patience") {
				b.Patience = &patience
			}
			if role == trainjob.RoleHost {
				for _, f := range []string{"epochs", "learning-rate", "l2", "batch-size", "patience", "class-weights", "model-id", "peer-file"} {
					if fs.Changed(f) {
						return &usageError{fmt.Errorf("--%s is the guest's to choose, not the host's", f)}
					}
				}
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var j trainjobapi.JobBody
			if _, err := c.do(cmd.Context(), http.MethodPost, "/train/v1/jobs", b, &j); err != nil {
				return err
			}
			// A host job waits for its guest: it returns unless --wait.
			follow := !detach && (role == trainjob.RoleGuest || wait)
			if follow {
				progress := stderr
				if quiet {
					progress = io.Discard
				}
				fmt.Fprintf(progress, "training job %s (%s, peer %s, %d rows)\n", j.ID, j.Role, j.Peer, j.Rows)
				if j, err = waitTrainJob(cmd.Context(), c, j.ID, poll, progress); err != nil {
					return err
				}
			}
			if err := printTrainJob(stdout, j, asJSON); err != nil {
				return err
			}
			if follow && j.Status != trainjob.StatusSucceeded {
				return fmt.Errorf("training job %s ended %s: %s", j.ID, j.Status, j.Error)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&b.Peer, "peer", "", "the other party: its registered name or its URL in the peers setting")
	fs.StringVar(&b.File, "file", "", "this party's CSV, relative to the node's data directory (guest: id,y,features; host: id,features)")
	fs.StringVar(&role, "role", "", "guest (default) or host")
	fs.StringVar(&b.PSIJob, "psi-job", "", "this node's PSI job (mode both) whose intersection selects and orders the rows")
	fs.StringVar(&b.Algo, "algo", trainjob.AlgoHeteroLR, "algorithm (only hetero-lr)")
	fs.StringVar(&b.HostFile, "peer-file", "", "guest: the host's CSV, relative to the host's data directory, when the session creates the host's job (default: the host's PSI input)")
	fs.StringVar(&guestFile, "guest-file", "", "same as --file with --role guest")
	fs.StringVar(&hostFile, "host-file", "", "same as --file with --role host")
	fs.StringVar(&b.ModelID, "model-id", "", "model identifier (guest; default "+trainjob.DefaultModelID+")")
	fs.IntVar(&b.Epochs, "epochs", 0, "maximum epochs (default the trainer's, 20)")
	fs.Float64Var(&b.LearningRate, "learning-rate", 0, "base learning rate (default 0.15)")
	fs.Float64Var(&l2, "l2", 0, "L2 regularisation (default 0.001)")
	fs.IntVar(&b.BatchSize, "batch-size", 0, "mini-batch size (default 512)")
	fs.IntVar(&patience, "patience", 0, "early-stopping patience in epochs, 0 disables it (default 3)")
	fs.StringVar(&b.ClassWeights, "class-weights", "", "balanced (default) or none")
	fs.BoolVar(&detach, "detach", false, "return once the job is created")
	fs.BoolVar(&wait, "wait", false, "follow a host job too until it ends")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	fs.BoolVar(&asJSON, "json", false, "print the job as JSON")
	fs.DurationVar(&poll, "poll", time.Second, "status poll interval while following")
	return cmd
}

func nonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// printTrainJob prints a job as JSON or as a few lines of text.
func printTrainJob(w io.Writer, j trainjobapi.JobBody, asJSON bool) error {
	if asJSON {
		return printJSON(w, j)
	}
	fmt.Fprintf(w, "job %s: %s (%s with %s, %s)\n", j.ID, j.Status, j.Role, j.Peer, j.Algo)
	if j.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", j.Error)
	}
	fmt.Fprintf(w, "  file %s, %d rows, %d features", j.File, j.Rows, j.Features)
	if j.PSIJob != "" {
		fmt.Fprintf(w, ", PSI job %s", j.PSIJob)
	}
	fmt.Fprintln(w)
	if j.ModelID != "" {
		fmt.Fprintf(w, "  model %s version %s\n", j.ModelID, j.ModelVersion)
	}
	if j.Epochs > 0 {
		fmt.Fprintf(w, "  epochs %d/%d", j.EpochsDone, j.Epochs)
		if n := len(j.EpochStats); n > 0 {
			e := j.EpochStats[n-1]
			fmt.Fprintf(w, ", last: validation loss %.4f AUC %.4f KS %.4f", e.Loss, e.AUC, e.KS)
		}
		fmt.Fprintln(w)
	}
	if j.Test != nil {
		fmt.Fprintf(w, "  test AUC %.4f KS %.4f log-loss %.4f (%d rows)\n", j.Test.AUC, j.Test.KS, j.Test.LogLoss, j.Test.Rows)
	}
	fmt.Fprintf(w, "  elapsed %.1fs, %.1f MB sent, %.1f MB received\n", j.ElapsedSeconds, float64(j.BytesSent)/1e6, float64(j.BytesReceived)/1e6)
	if j.ModelPath != "" {
		fmt.Fprintf(w, "  model half: %s\n", j.ModelPath)
	}
	return nil
}

func newTrainStatusCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status JOB_ID",
		Short: "Show a training job",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var j trainjobapi.JobBody
			if _, err := c.do(cmd.Context(), http.MethodGet, "/train/v1/jobs/"+url.PathEscape(args[0]), nil, &j); err != nil {
				return err
			}
			return printTrainJob(stdout, j, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the job as JSON")
	return cmd
}

func newTrainListCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	var (
		role, status string
		limit        int
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:   "list [--role guest|host] [--status S[,S...]] [--limit N]",
		Short: "List training jobs, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return &usageError{fmt.Errorf("--limit must be 1..1000")}
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if role != "" {
				q.Set("role", role)
			}
			if status != "" {
				q.Set("status", status)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var l trainjobapi.ListBody
			if _, err := c.do(cmd.Context(), http.MethodGet, "/train/v1/jobs?"+q.Encode(), nil, &l); err != nil {
				return err
			}
			if asJSON {
				return printJSON(stdout, l)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tROLE\tPEER\tSTATUS\tEPOCHS\tTEST AUC\tMODEL\tCREATED")
			for _, j := range l.Jobs {
				auc := "-"
				if j.Test != nil {
					auc = fmt.Sprintf("%.4f", j.Test.AUC)
				}
				model := "-"
				if j.ModelID != "" {
					model = j.ModelID + "@" + j.ModelVersion
				}
				epochs := strconv.Itoa(j.EpochsDone)
				if j.Epochs > 0 {
					epochs += "/" + strconv.Itoa(j.Epochs)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Role, j.Peer, j.Status, epochs, auc, model, j.Created.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&role, "role", "", "only guest or host jobs")
	fs.StringVar(&status, "status", "", "only jobs with these statuses (comma-separated)")
	fs.IntVar(&limit, "limit", 100, "at most this many jobs")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newTrainCancelCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "cancel JOB_ID",
		Short: "Cancel a training job (a guest's host is told)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var j trainjobapi.JobBody
			if _, err := c.do(cmd.Context(), http.MethodPost, "/train/v1/jobs/"+url.PathEscape(args[0])+"/cancel", nil, &j); err != nil {
				return err
			}
			return printTrainJob(stdout, j, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the job as JSON")
	return cmd
}

// waitTrainJob polls a job until it leaves waiting and running, printing
// one progress line per finished epoch to progress.
func waitTrainJob(ctx context.Context, c *apiClient, id string, poll time.Duration, progress io.Writer) (trainjobapi.JobBody, error) {
	last := -1
	for {
		var j trainjobapi.JobBody
		if _, err := c.do(ctx, http.MethodGet, "/train/v1/jobs/"+url.PathEscape(id), nil, &j); err != nil {
			return j, err
		}
		if len(j.EpochStats) != last {
			for _, e := range j.EpochStats[max(last, 0):] {
				fmt.Fprintf(progress, "epoch %d/%d: validation loss %.4f AUC %.4f KS %.4f (%.1fs)\n", e.Epoch+1, j.Epochs, e.Loss, e.AUC, e.KS, e.Seconds)
			}
			last = len(j.EpochStats)
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
	var hj, gj trainjobapi.JobBody
	if _, err := hc.do(ctx, http.MethodPost, "/train/v1/jobs", trainjobapi.CreateBody{Role: trainjob.RoleHost, Peer: "bank", File: "host.csv"}, &hj); err != nil {
		return res, fmt.Errorf("host job: %w", err)
	}
	if _, err := gc.do(ctx, http.MethodPost, "/train/v1/jobs", trainjobapi.CreateBody{Peer: "partner", File: "guest.csv", Epochs: o.epochs}, &gj); err != nil {
		return res, fmt.Errorf("guest job: %w", err)
	}
	final, err := waitTrainJob(ctx, gc, gj.ID, 100*time.Millisecond, progress)
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
	if res.AUCCentralized, err = lr.CentralizedAUC(ctx, g, h, cfg); err != nil {
		return res, err
	}
	return res, nil
}
