// Command webhooksink is the local webhook receiver of
// scripts/observability-smoke.sh: it stands in for the pager/SMS gateway
// and the chat webhook of alertmanager.yml and writes one line per alert it
// receives, so the smoke test can count deliveries.
//
//	webhooksink -addr-file FILE -log FILE
//
// POST /pager takes Alertmanager's webhook JSON and logs each alert as
//
//	pager STATUS ALERTNAME CONDITION job=JOB instance=INSTANCE
//
// where CONDITION is the alert's other labels, sorted, as k=v joined by
// commas ("-" when none): the same condition scraped under two jobs or
// instances gives two lines with one CONDITION. POST /chat takes the
// Slack-format message of the chat receiver and logs
//
//	chat TITLE
//
// It listens on 127.0.0.1 (port from -addr, 0 for any), writes the address
// it got to -addr-file once it accepts, and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	addrFile := flag.String("addr-file", "", "write the listen address here once listening")
	logFile := flag.String("log", "", "append one line per received alert here (default stdout)")
	flag.Parse()

	out := io.Writer(os.Stdout)
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		out = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *addrFile, out); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr, addrFile string, out io.Writer) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := &sink{out: out}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pager", s.pager)
	mux.HandleFunc("POST /chat", s.chat)
	srv := &http.Server{Handler: mux}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if addrFile != "" {
		if err := os.WriteFile(addrFile, []byte(l.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type sink struct {
	mu  sync.Mutex
	out io.Writer
}

func (s *sink) write(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(s.out, line)
}

// webhookMessage is the part of Alertmanager's webhook JSON the sink reads.
type webhookMessage struct {
	Alerts []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func (s *sink) pager(w http.ResponseWriter, r *http.Request) {
	var m webhookMessage
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, a := range m.Alerts {
		var cond []string
		for k, v := range a.Labels {
			if k != "alertname" && k != "job" && k != "instance" {
				cond = append(cond, k+"="+v)
			}
		}
		slices.Sort(cond)
		c := strings.Join(cond, ",")
		if c == "" {
			c = "-"
		}
		s.write(fmt.Sprintf("pager %s %s %s job=%s instance=%s", a.Status, a.Labels["alertname"], c, a.Labels["job"], a.Labels["instance"]))
	}
}

func (s *sink) chat(w http.ResponseWriter, r *http.Request) {
	var m struct {
		Attachments []struct {
			Title string `json:"title"`
		} `json:"attachments"`
	}
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, a := range m.Attachments {
		s.write("chat " + strings.ReplaceAll(a.Title, "\n", " "))
	}
}
