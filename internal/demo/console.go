package demo

import (
	"context"
	"fmt"
	"io"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
)

// consoleTokenName names the admin token each run makes for the console.
const consoleTokenName = "demo-console"

// startConsole waits for a party's console and gives it a fresh admin
// token to log in with; the previous run's token is revoked, so only the
// printed one works.
func (d *Demo) startConsole(ctx context.Context, p *Party) error {
	// The console's listener faces browsers: it answers /health only.
	if err := waitFor(ctx, apiclient.New(p.ConsoleURL, nil), "/health"); err != nil {
		return fmt.Errorf("%s console did not become ready (see %s): %w", p.Name, d.logPath(p.Name), err)
	}
	toks := auth.NewTokens(sqlauth.New(p.Node.DB()))
	list, err := toks.List(ctx)
	if err != nil {
		return fmt.Errorf("%s console token: %w", p.Name, err)
	}
	for _, t := range list {
		if t.Name == consoleTokenName && t.RevokedAt == nil {
			if err := toks.Revoke(ctx, t.ID); err != nil {
				return fmt.Errorf("%s console token: %w", p.Name, err)
			}
		}
	}
	secret, _, err := toks.Create(ctx, consoleTokenName, auth.RoleAdmin)
	if err != nil {
		return fmt.Errorf("%s console token: %w", p.Name, err)
	}
	p.ConsoleToken = secret
	return nil
}

// printConsoles writes the consoles' addresses and tokens.
func (d *Demo) printConsoles(w io.Writer) {
	fmt.Fprintf(w, `
Console (open in a browser; log in with the party's token, an admin token made for this run)
  bank (guest)         %s
                       token %s
  partner (host)       %s
                       token %s
`, d.Guest.ConsoleURL, d.Guest.ConsoleToken, d.Host.ConsoleURL, d.Host.ConsoleToken)
}
