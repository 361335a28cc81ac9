package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
)

func newPSICmd(lookup env, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	_ = stdin
	cmd := &cobra.Command{
		Use:   "psi",
		Short: "Run and inspect private set intersection jobs through this node's psi service",
		Long: `Run and inspect private set intersection (PSI) jobs through this node's psi service
(default http://127.0.0.1:7001, --server or FEDRISK_PSI_URL).

The guest learns which of its identifiers the host also holds (or, with
--mode cardinality, only how many); the host learns only the guest's set size.
With --mode both (on both sides) the guest then reveals the intersection to
the host, which learns its own rows of it too, trusting the guest's report.
The host's operator first starts a host job for the guest (fedrisk psi run
--role host --peer GUEST ...), then the guest runs its job.`,
	}
	cf := addClientFlags(cmd, lookup, "http://127.0.0.1:7001", "FEDRISK_PSI_URL")
	cmd.AddCommand(newPSIRunCmd(cf, stdout, stderr), newPSIStatusCmd(cf, stdout), newPSIListCmd(cf, stdout), newPSICancelCmd(cf, stdout))
	return cmd
}

type psiRunFlags struct {
	peer, peerJob, input, table, column, purpose, mode, out, role, phone string
	trim, caseFold, quiet                                                bool
	batch                                                                int
	poll, timeout                                                        time.Duration
}

func newPSIRunCmd(cf *clientFlags, stdout, stderr io.Writer) *cobra.Command {
	var f psiRunFlags
	cmd := &cobra.Command{
		Use:   "run --peer NAME (--input FILE.csv | --table TABLE) [--column id] [--out intersection.csv]",
		Short: "Create a PSI job, show its progress until it ends, and write the intersection",
		Example: `  fedrisk psi run --peer partner --input ids.csv --column id --out intersection.csv
  fedrisk psi run --role host --peer bank --input customers.csv --column phone --phone 86
  fedrisk psi run --role host --peer bank --mode both --input customers.csv --out shared.csv`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&f.peer, "peer", "", "the other party: its registered name or its URL (see the peers setting)")
	fs.StringVar(&f.peerJob, "peer-job", "", "guest: the host's job id, when the host's operator gave it")
	fs.StringVar(&f.input, "input", "", "CSV file with a header row, read by the node: it must lie below the node's psi.input_dir (default data_dir/input)")
	fs.StringVar(&f.table, "table", "", "instead of --input: a table of the node's database")
	fs.StringVar(&f.column, "column", "id", "CSV header name or table column of the identifiers")
	fs.StringVar(&f.purpose, "purpose", "", "guest: only identifiers with an active consent for (peer, purpose) take part")
	fs.StringVar(&f.mode, "mode", "intersection", "intersection, cardinality (the guest learns only the size) or both (the host learns the intersection too); both parties must agree")
	fs.StringVar(&f.out, "out", "", "write the intersection (row,id) to this CSV file (a guest's job, or a host's in mode both)")
	fs.StringVar(&f.role, "role", "", "guest or host (default: guest with --out outside --mode both, else the node's role)")
	fs.BoolVar(&f.trim, "trim", true, "normalisation: trim white space (both parties must agree)")
	fs.BoolVar(&f.caseFold, "case-fold", false, "normalisation: case-fold identifiers")
	fs.StringVar(&f.phone, "phone", "", "normalisation: identifiers are phone numbers, made E.164 with this default country code (e.g. 86)")
	fs.IntVar(&f.batch, "batch-size", 0, "elements per message (default: the node's, 4096)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines")
	fs.DurationVar(&f.poll, "poll", time.Second, "how often to ask for progress")
	fs.DurationVar(&f.timeout, "timeout", 24*time.Hour, "give up waiting after this long (the job keeps running)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		body, err := f.body()
		if err != nil {
			return err
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		var j psiapi.JobBody
		if _, err := c.do(ctx, http.MethodPost, "/psi/v1/jobs", body, &j); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "job %s created: %s job (%s) with %s\n", j.ID, j.Role, j.Mode, j.Peer)
		if j.Role == string(psijob.RoleHost) && j.Mode != string(psijob.ModeBoth) && f.out != "" {
			return &usageError{fmt.Errorf("--out: the host learns no intersection outside --mode both (job %s was created and waits for the guest)", j.ID)}
		}
		wctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		end, err := waitJob(wctx, c, j.ID, f.poll, f.quiet, stderr)
		if err != nil {
			return fmt.Errorf("%w; job %s keeps running on the node: fedrisk psi status %s, fedrisk psi cancel %s", err, j.ID, j.ID, j.ID)
		}
		if end.Status != string(psijob.StatusDone) {
			return fmt.Errorf("job %s %s: %s", end.ID, end.Status, end.Error)
		}
		summary(stdout, end)
		if f.out != "" {
			n, err := downloadResult(ctx, c, end.ID, f.out)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote %d rows to %s\n", n, f.out)
		}
		return nil
	}
	return cmd
}

// body validates the flags and builds the request.
func (f psiRunFlags) body() (psiapi.CreateJobBody, error) {
	usage := func(format string, args ...any) (psiapi.CreateJobBody, error) {
		return psiapi.CreateJobBody{}, &usageError{fmt.Errorf(format, args...)}
	}
	switch {
	case f.peer == "":
		return usage("--peer is required: the other party's registered name or URL")
	case strings.Contains(f.peer, "://"):
		return usage("--peer takes the party name registered in the node's peers setting, not a URL (got %q)", f.peer)
	case (f.input == "") == (f.table == ""):
		return usage("give exactly one of --input FILE.csv and --table TABLE")
	case f.column == "":
		return usage("--column must name the identifier column")
	case !psijob.Mode(f.mode).Valid():
		return usage("--mode must be intersection, cardinality or both (got %q)", f.mode)
	case f.role != "" && f.role != "guest" && f.role != "host":
		return usage("--role must be guest or host (got %q)", f.role)
	case f.out != "" && (f.mode == "cardinality" || (f.role == "host" && f.mode != "both")):
		return usage("--out: only a guest's intersection job, or a job in --mode both, has rows to write")
	case f.poll <= 0 || f.timeout <= 0:
		return usage("--poll and --timeout must be positive")
	case f.batch < 0 || f.batch > psijob.MaxBatchSize:
		return usage("--batch-size must be 1..%d", psijob.MaxBatchSize)
	}
	if f.out != "" && f.role == "" && f.mode != string(psijob.ModeBoth) {
		f.role = "guest" // only a guest has rows to write (in mode both, the node's role decides)
	}
	b := psiapi.CreateJobBody{Role: f.role, Peer: f.peer, PeerJob: f.peerJob, Purpose: f.purpose, Mode: f.mode, BatchSize: f.batch,
		Normalization: &psiapi.NormalizationBody{Trim: f.trim, CaseFold: f.caseFold, Phone: f.phone}}
	if f.input != "" {
		abs, err := filepath.Abs(f.input)
		if err != nil {
			return usage("--input: %v", err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return usage("--input: %v", err)
		}
		if st.IsDir() {
			return usage("--input: %s is a directory", abs)
		}
		b.Input = psiapi.InputBody{Kind: "csv", Path: abs, Column: f.column}
	} else {
		b.Input = psiapi.InputBody{Kind: "table", Table: f.table, Column: f.column}
	}
	if f.out != "" {
		dir := filepath.Dir(f.out)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return usage("--out: directory %s does not exist", dir)
		}
	}
	return b, nil
}

// waitJob polls job id until it is final, printing progress lines.
func waitJob(ctx context.Context, c *apiClient, id string, poll time.Duration, quiet bool, stderr io.Writer) (psiapi.JobBody, error) {
	last := ""
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		var j psiapi.JobBody
		if _, err := c.do(ctx, http.MethodGet, "/psi/v1/jobs/"+url.PathEscape(id), nil, &j); err != nil {
			if ctx.Err() != nil {
				return j, fmt.Errorf("stopped waiting: %w", context.Cause(ctx))
			}
			return j, err
		}
		if line := progressLine(j); !quiet && line != last {
			fmt.Fprintln(stderr, line)
			last = line
		}
		if psijob.Status(j.Status).Final() {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, fmt.Errorf("stopped waiting: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

func progressLine(j psiapi.JobBody) string {
	p := j.Progress
	line := fmt.Sprintf("%s %s", j.ID, j.Status)
	if p.TotalItems > 0 {
		line += fmt.Sprintf(": %d/%d items (%.1f%%)", p.DoneItems, p.TotalItems, p.Percent)
	}
	if p.Rate > 0 {
		line += fmt.Sprintf(", %.0f items/s", p.Rate)
	}
	if p.ETASeconds > 0 {
		line += ", ETA " + (time.Duration(p.ETASeconds) * time.Second).String()
	}
	if j.Status == string(psijob.StatusPending) && j.Role == string(psijob.RoleHost) {
		line += " (waiting for " + j.Peer + " to start its job)"
	}
	return line
}

func summary(w io.Writer, j psiapi.JobBody) {
	size := int64(0)
	if j.IntersectionSize != nil {
		size = *j.IntersectionSize
	}
	if j.Role == string(psijob.RoleHost) {
		if j.Mode == string(psijob.ModeBoth) {
			fmt.Fprintf(w, "done: intersection %d of %d identifiers, as revealed by %s (its set: %d); %d duplicate, %d invalid\n", size, j.LocalCount, j.Peer, j.PeerCount, j.Duplicates, j.Invalid)
			return
		}
		fmt.Fprintf(w, "done: %d identifiers served to %s (its set: %d); the host learns no intersection\n", j.LocalCount, j.Peer, j.PeerCount)
		return
	}
	fmt.Fprintf(w, "done: intersection %d of %d identifiers (%s has %d); %d duplicate, %d invalid", size, j.LocalCount, j.Peer, j.PeerCount, j.Duplicates, j.Invalid)
	if j.Purpose != "" {
		fmt.Fprintf(w, ", %d without consent for %s", j.Excluded, j.Purpose)
	}
	fmt.Fprintln(w)
}

// downloadResult streams the job's result.csv into path (via a temporary
// file, so a broken download leaves no partial file).
func downloadResult(ctx context.Context, c *apiClient, id, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/psi/v1/jobs/"+url.PathEscape(id)+"/result.csv", nil)
	if err != nil {
		return 0, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = 0 // a large result may take longer than one API call; ctx bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("download the result: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return 0, fmt.Errorf("download the result: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".psi-result-*.csv")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	lines := &lineCounter{w: tmp}
	if _, err := io.Copy(lines, resp.Body); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("download the result: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, err
	}
	return max(lines.n-1, 0), nil // minus the header
}

type lineCounter struct {
	w io.Writer
	n int
}

func (l *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			l.n++
		}
	}
	return l.w.Write(p)
}

func jobArg(args []string) (string, error) {
	if !psijob.ValidJobID(args[0]) {
		return "", &usageError{fmt.Errorf("%q is not a PSI job id (psi_ and 20 hex digits)", args[0])}
	}
	return args[0], nil
}

func newPSIStatusCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	return psiJobCmd(cf, stdout, "status ID", "Show a job with its progress", http.MethodGet, "")
}

// psiJobCmd is a command that sends one request about job ID and prints
// the job it answers.
func psiJobCmd(cf *clientFlags, stdout io.Writer, use, short, method, suffix string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := jobArg(args)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var j psiapi.JobBody
			if _, err := c.do(cmd.Context(), method, "/psi/v1/jobs/"+id+suffix, nil, &j); err != nil {
				return err
			}
			return printJSON(stdout, j)
		},
	}
}

func newPSIListCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	var status, role string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return &usageError{errors.New("--limit must be 1..1000")}
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if status != "" {
				q.Set("status", status)
			}
			if role != "" {
				q.Set("role", role)
			}
			var out struct{ Jobs []psiapi.JobBody }
			if _, err := c.do(cmd.Context(), http.MethodGet, "/psi/v1/jobs?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tROLE\tPEER\tMODE\tSTATUS\tPROGRESS\tINTERSECTION\tCREATED")
			for _, j := range out.Jobs {
				size := "-"
				if j.IntersectionSize != nil {
					size = fmt.Sprint(*j.IntersectionSize)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f%%\t%s\t%s\n", j.ID, j.Role, j.Peer, j.Mode, j.Status, j.Progress.Percent, size, j.CreatedAt)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only jobs with this status (pending, running, done, failed, cancelled)")
	cmd.Flags().StringVar(&role, "role", "", "only guest or host jobs")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many jobs (1..1000)")
	return cmd
}

func newPSICancelCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	return psiJobCmd(cf, stdout, "cancel ID", "Cancel a job; the peer's side ends too", http.MethodPost, "/cancel")
}
