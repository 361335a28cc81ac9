package consoleapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
)

// loginData is what the login page shows.
type loginData struct {
	Error     string
	Tokenless bool // AUTH_REQUIRED is off and the browser is on loopback
	Expired   bool
}

func (a *API) tokenless(r *http.Request) bool {
	return !a.opts.AuthRequired && authhttp.IsLoopback(r.RemoteAddr)
}

// loginPage shows the login form with a fresh pre-session CSRF token.
func (a *API) loginPage(w http.ResponseWriter, r *http.Request) {
	if a.sessions.get(a.readCookie(r, sessionCookie)) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	a.showLogin(w, r, http.StatusOK, "")
}

func (a *API) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	tok := randomToken()
	a.setCookie(w, r, loginCookie, tok, 3600)
	cat := a.catalog(r)
	v := a.newView(r, nil, cat.T("login.title"), loginData{Error: msg, Tokenless: a.tokenless(r)})
	v.CSRF = tok // the forms carry the cookie just set
	if err := a.renderView(w, status, "login", v); err != nil {
		a.log.Error("console: login page failed", "err", err)
	}
}

// login checks the token with the consent service's whoami route and
// opens a session with the roles it reports. The token is never logged.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	cat := a.catalog(r)
	if err := a.checkPost(r, a.readCookie(r, loginCookie)); err != nil {
		a.log.WarnContext(r.Context(), "console: login POST refused", "reason", err.Error())
		a.showLogin(w, r, http.StatusForbidden, cat.T("error.csrf"))
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	var u user
	switch {
	case token == "" && r.PostForm.Get("tokenless") == "1":
		if !a.tokenless(r) {
			a.showLogin(w, r, http.StatusForbidden, cat.T("login.tokenless_refused"))
			return
		}
		l := auth.Local()
		u = user{Kind: l.Kind, Name: l.Name}
		for _, role := range l.Roles {
			u.Roles = append(u.Roles, string(role))
		}
	case token == "":
		a.showLogin(w, r, http.StatusBadRequest, cat.T("login.token_required"))
		return
	case len(token) > 256:
		a.showLogin(w, r, http.StatusUnauthorized, cat.T("login.bad_token"))
		return
	default:
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		who, err := a.backend(token).whoami(ctx)
		var ae *apiclient.Error
		switch {
		case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
			a.log.InfoContext(r.Context(), "console: login refused", "reason", ae.Code)
			a.showLogin(w, r, http.StatusUnauthorized, cat.T("login.bad_token"))
			return
		case err != nil:
			a.log.WarnContext(r.Context(), "console: login cannot reach the consent service", "err", err)
			a.showLogin(w, r, http.StatusBadGateway, cat.T("login.unavailable"))
			return
		}
		u = user{Kind: who.Kind, Name: who.Name, Roles: who.Roles}
	}
	if old := a.readCookie(r, sessionCookie); old != "" {
		a.sessions.drop(old) // a new id at every login: no session fixation
	}
	id, _ := a.sessions.create(token, u)
	a.setCookie(w, r, sessionCookie, id, 0)
	a.setCookie(w, r, loginCookie, "", -1)
	a.log.InfoContext(r.Context(), "console: login", "user_kind", u.Kind, "user", u.Name, "roles", u.RolesText())
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout ends the session.
func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	id := a.readCookie(r, sessionCookie)
	sess := a.sessions.get(id)
	if sess == nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	if err := a.checkPost(r, sess.csrf); err != nil {
		a.renderError(w, r, nil, http.StatusForbidden, a.catalog(r).T("error.csrf"))
		return
	}
	a.sessions.drop(id)
	a.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
