// Command gen writes fedrisk's Grafana dashboards (package grafana) as JSON
// into a directory.
//
// By default the directory is dashboards/ beside the package:
//
//	go generate ./monitoring/grafana   (from deploy/)
//	go run ./monitoring/grafana/gen -out monitoring/grafana/dashboards
//
// It removes *.json files there that no dashboard writes any more.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fedrisk/fedrisk/deploy/monitoring/grafana"
)

func main() {
	out := flag.String("out", "dashboards", "directory to write the dashboards' JSON into")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	files, err := grafana.Render()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if _, keep := files[filepath.Base(p)]; !keep {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
