package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/features/sqlfeatures"
	"github.com/fedrisk/fedrisk/internal/node"
)

// featureViewsEnv names the variable that can replace --views.
const featureViewsEnv = "FEDRISK_FEATURE_VIEWS"

func newFeaturesCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "features",
		Short: "This party's online feature store: view definitions, CSV loads, lookups",
		Long: `This party's online feature store, which the scoring service reads in milliseconds.

Feature views are defined in a YAML file (--views or FEDRISK_FEATURE_VIEWS; see
internal/features/examples/views.yaml): each names its entity key, its features with
type and default, and a max age (ttl). Loads write to the node's database and delete
the loaded entities' entries from the node's Redis cache (when redis_url is set);
serving nodes also drop stale cache entries within a second of a load.

Entity keys are stored as given: in production use the consent pseudonym or a blind
index of the subject, never a raw identifier.`,
	}
	cmd.AddCommand(newFeaturesLoadCmd(lookup, stdout, stderr), newFeaturesGetCmd(lookup, stdout, stderr), newFeaturesViewsCmd(lookup, stdout))
	return cmd
}

// featureViewsFlag is the --views flag of the features commands.
type featureViewsFlag struct{ path string }

func addFeatureViewsFlag(cmd *cobra.Command) *featureViewsFlag {
	vf := &featureViewsFlag{}
	cmd.Flags().StringVar(&vf.path, "views", "", "feature view definitions, YAML (env "+featureViewsEnv+")")
	return vf
}

func (vf *featureViewsFlag) load(lookup env) (*features.Registry, error) {
	path := vf.path
	if path == "" {
		path, _ = lookup(featureViewsEnv)
	}
	if path == "" {
		return nil, &usageError{fmt.Errorf("--views FILE (or %s) is required: the feature view definitions", featureViewsEnv)}
	}
	r, err := features.LoadViews(path)
	if err != nil {
		return nil, &usageError{err}
	}
	return r, nil
}

// openFeatureStore opens the store over the node's database and cache
// (with Redis, the cache the serving nodes read).
func openFeatureStore(r *node.Resources, views *features.Registry) (*features.Store, error) {
	return features.New(sqlfeatures.New(r.DB), views, features.Options{Log: r.Log, Cache: r.Cache})
}

func checkFeatureView(views *features.Registry, name string) error {
	if name == "" {
		return &usageError{errors.New("--view is required")}
	}
	if _, ok := views.View(name); !ok {
		var names []string
		for _, v := range views.Views() {
			names = append(names, v.Name)
		}
		return &usageError{fmt.Errorf("unknown feature view %q (defined: %s)", name, strings.Join(names, ", "))}
	}
	return nil
}

func newFeaturesLoadCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	var (
		view, file, tsColumn string
		ignore               []string
		batch                int
		quiet, entityRef     bool
	)
	cmd := &cobra.Command{
		Use:   "load --view VIEW --file FILE.csv",
		Short: "Load a CSV file into a feature view",
		Long: `Load a CSV file into a feature view: a header row with the view's entity column, some
or all of its feature columns and optionally an event time column (event_timestamp, or
the view's timestamp_column, or --timestamp-column); without one every value gets the
load time. An empty cell leaves the stored value as it was; a value older than the
stored one is kept out.

The file is validated in full first: a bad row is reported with its line and column
and nothing is loaded. It is then written in transactions of --batch-size rows; if the
database fails mid-way, run the same command again to complete the load.`,
		Example: `  fedrisk features load --views views.yaml --view host_credit --file data/default_credit_hetero_host.csv
  fedrisk features load --views views.yaml --view guest_credit --file data/default_credit_hetero_guest.csv --ignore-columns y
  FEDRISK_SUBJECT_REF_KEY=... fedrisk features load --party partner --view host_credit --file customers.csv --entity-ref`,
		Args: noArgs,
	}
	cf := addConfigFlags(cmd)
	vf := addFeatureViewsFlag(cmd)
	fs := cmd.Flags()
	fs.StringVar(&view, "view", "", "feature view to load into")
	fs.StringVar(&file, "file", "", "CSV file with a header row")
	fs.IntVar(&batch, "batch-size", features.DefaultBatchSize, "rows per transaction")
	fs.StringVar(&tsColumn, "timestamp-column", "", "column holding event times (default: the view's, event_timestamp)")
	fs.StringSliceVar(&ignore, "ignore-columns", nil, "columns of the file to skip, e.g. a label (comma-separated)")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	fs.BoolVar(&entityRef, "entity-ref", false, "host: key rows by the subject reference (needs subject_ref_key), not the identifier")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		views, err := vf.load(lookup)
		if err != nil {
			return err
		}
		if err := checkFeatureView(views, view); err != nil {
			return err
		}
		if file == "" {
			return &usageError{errors.New("--file is required")}
		}
		if batch < 1 || batch > features.MaxBatchSize {
			return &usageError{fmt.Errorf("--batch-size must be 1..%d", features.MaxBatchSize)}
		}
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		return withResources(cmd.Context(), cf, lookup, stderr, func(r *node.Resources) error {
			store, err := openFeatureStore(r, views)
			if err != nil {
				return err
			}
			cfg := r.Config
			var src io.ReadSeeker = f
			if entityRef {
				if cfg.SubjectRefKey == "" {
					return &usageError{errors.New("--entity-ref needs subject_ref_key (env FEDRISK_SUBJECT_REF_KEY)")}
				}
				key, err := config.DecodeKey(cfg.SubjectRefKey)
				if err != nil {
					return err
				}
				v, _ := views.View(view)
				if src, err = features.RekeyCSV(f, v.Entity, consent.HostRefOf(key, cfg.Party)); err != nil {
					return fmt.Errorf("%s: %w (nothing was loaded)", file, err)
				}
			}
			opts := features.LoadOptions{BatchSize: batch, TimestampColumn: tsColumn, IgnoreColumns: ignore}
			if !quiet {
				opts.Progress = func(done, total int) { fmt.Fprintf(stderr, "\rloading %s: %d/%d rows", view, done, total) }
			}
			start := time.Now()
			rep, err := store.Load(cmd.Context(), view, src, opts)
			if !quiet && rep.Batches > 0 {
				fmt.Fprintln(stderr)
			}
			if err != nil {
				if errors.Is(err, features.ErrInvalidCSV) && rep.Batches == 0 {
					return fmt.Errorf("%s: %w (nothing was loaded)", file, err)
				}
				return err
			}
			at := "the load time " + rep.LoadedAt.Format(time.RFC3339)
			if rep.TimestampColumn != "" {
				at = "column " + rep.TimestampColumn
			}
			fmt.Fprintf(stdout, "loaded %d rows into %s in %s: %d values written, %d kept out (a newer value is stored), %d empty cells; event times from %s\n",
				rep.Rows, view, time.Since(start).Round(time.Millisecond), rep.Values, rep.Stale, rep.Empty, at)
			switch {
			case cfg.RedisURL == "":
				fmt.Fprintln(stdout, "cache: no redis_url configured; serving nodes drop their cached entries of this view within a second")
			case rep.InvalidationErrors > 0:
				fmt.Fprintf(stdout, "cache: %d entries deleted, %d deletes failed (serving nodes drop those entries within a second)\n", rep.Invalidated, rep.InvalidationErrors)
			default:
				fmt.Fprintf(stdout, "cache: %d entries deleted\n", rep.Invalidated)
			}
			return nil
		})
	}
	return cmd
}

func newFeaturesGetCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	var (
		view, entity string
		feats        []string
	)
	cmd := &cobra.Command{
		Use:   "get --view VIEW --entity KEY [--feature NAME]...",
		Short: "Show one entity's features as the scoring service reads them",
		Long: `Show one entity's features, with their status (PRESENT, NOT_FOUND or OUTSIDE_MAX_AGE:
then the value is the view's default) and event time. The entity key is personal data
unless it is a pseudonym: mind your shell history.`,
		Args: noArgs,
	}
	cf := addConfigFlags(cmd)
	vf := addFeatureViewsFlag(cmd)
	cmd.Flags().StringVar(&view, "view", "", "feature view")
	cmd.Flags().StringVar(&entity, "entity", "", "entity key")
	cmd.Flags().StringSliceVar(&feats, "feature", nil, "features to show (repeatable or comma-separated; default all)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		views, err := vf.load(lookup)
		if err != nil {
			return err
		}
		if err := checkFeatureView(views, view); err != nil {
			return err
		}
		if err := features.ValidateEntity(entity); err != nil {
			return &usageError{fmt.Errorf("--entity: %w", err)}
		}
		return withResources(cmd.Context(), cf, lookup, stderr, func(r *node.Resources) error {
			store, err := openFeatureStore(r, views)
			if err != nil {
				return err
			}
			vec, err := store.Get(cmd.Context(), view, entity, feats)
			if errors.Is(err, features.ErrUnknownFeature) {
				return &usageError{err}
			}
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FEATURE\tVALUE\tSTATUS\tEVENT TIME")
			for i, name := range vec.Features {
				at := "-"
				if !vec.EventTimes[i].IsZero() {
					at = vec.EventTimes[i].Format(time.RFC3339Nano)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, vec.Values[i], vec.Statuses[i], at)
			}
			return tw.Flush()
		})
	}
	return cmd
}

func newFeaturesViewsCmd(lookup env, stdout io.Writer) *cobra.Command {
	var view string
	cmd := &cobra.Command{
		Use:   "views [--view VIEW]",
		Short: "Check the view definitions and list the views, or one view's features",
		Args:  noArgs,
	}
	vf := addFeatureViewsFlag(cmd)
	cmd.Flags().StringVar(&view, "view", "", "list this view's features")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		views, err := vf.load(lookup)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		if view == "" {
			fmt.Fprintln(tw, "VIEW\tENTITY\tFEATURES\tTTL\tDESCRIPTION")
			for _, v := range views.Views() {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", v.Name, v.Entity, len(v.Features), featureTTLText(v.TTL), v.Description)
			}
			return tw.Flush()
		}
		if err := checkFeatureView(views, view); err != nil {
			return err
		}
		v, _ := views.View(view)
		fmt.Fprintln(tw, "FEATURE\tTYPE\tDEFAULT\tDESCRIPTION")
		for _, f := range v.Features {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, f.Type, f.Default, f.Description)
		}
		return tw.Flush()
	}
	return cmd
}

func featureTTLText(d time.Duration) string {
	switch {
	case d == 0:
		return "none"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
