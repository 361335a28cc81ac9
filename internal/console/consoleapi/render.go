package consoleapi

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/console"
)

// pages holds one template set per page: the layout, the chart partials
// and the page's own file (which defines "content" and any live fragments).
type pages struct {
	sets map[string]*template.Template
}

func funcs() template.FuncMap {
	return template.FuncMap{
		"add":  func(a, b float64) float64 { return a + b },
		"sub":  func(a, b float64) float64 { return a - b },
		"half": func(a, b float64) float64 { return (a + b) / 2 },
		// f formats a number with d decimals ("—" for NaN or ±Inf).
		"f": func(v float64, d int) string {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return "—"
			}
			return strconv.FormatFloat(v, 'f', d, 64)
		},
		// pct formats a 0..1 share as a percentage.
		"pct": func(v float64) string {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return "—"
			}
			return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
		},
		"int":   func(v any) string { return console.Int(toInt64(v)) },
		"short": func(s string, n int) string { return shorten(s, n) },
		"join":  strings.Join,
		"lower": strings.ToLower,
		"deref": func(p *int64) int64 {
			if p == nil {
				return 0
			}
			return *p
		},
		"isTrue": func(p *bool) bool { return p != nil && *p },
		"rfc3339": func(s string) time.Time {
			t, _ := time.Parse(time.RFC3339, s)
			return t
		},
	}
}

func toInt64(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int64:
		return x
	case float64:
		return int64(math.Round(x))
	case *int64:
		if x != nil {
			return *x
		}
	}
	return 0
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func parsePages() (*pages, error) {
	base, err := template.New("layout.html").Funcs(funcs()).ParseFS(assets, "templates/layout.html", "templates/charts.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	files, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{sets: map[string]*template.Template{}}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" || name == "charts" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(assets, f)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", f, err)
		}
		p.sets[name] = t
	}
	return p, nil
}

// view is what every page template gets.
type view struct {
	L            *console.Catalog
	Lang         string
	Langs        []langOption
	Title        string
	Party        string
	NodeRole     string
	User         *user
	Nav          []navItem
	Current      string
	CSRF         string
	Back         string
	Flash        *flash
	AssetVersion string
	Data         any
}

type langOption struct {
	Tag, Name string
	Current   bool
}

type navItem struct {
	Href, Label string
	Current     bool
}

// nav lists the pages the user may open.
func (a *API) nav(cat *console.Catalog, u *user, current string) []navItem {
	if u == nil {
		return nil
	}
	items := []struct{ href, key, role string }{
		{"/", "nav.overview", ""},
		{"/consents", "nav.consents", roleRead},
		{"/psi", "nav.psi", roleRead},
		{"/training", "nav.training", roleRead},
		{"/models", "nav.models", roleRead},
		{"/scoring", "nav.scoring", roleOperate},
		{"/budgets", "nav.budgets", roleRead},
		{"/audit", "nav.audit", roleRead},
		{"/security", "nav.security", ""},
	}
	var out []navItem
	for _, it := range items {
		if it.role != "" && !u.Has(it.role) {
			continue
		}
		cur := current == it.href || (it.href != "/" && strings.HasPrefix(current, it.href+"/"))
		out = append(out, navItem{Href: it.href, Label: cat.T(it.key), Current: cur})
	}
	return out
}

func (a *API) newView(r *http.Request, rq *req, title string, data any) *view {
	cat := a.catalog(r)
	v := &view{L: cat, Lang: string(cat.Lang()), Title: title, Party: a.opts.Party, NodeRole: a.opts.Role,
		Current: r.URL.Path, Back: r.URL.Path, AssetVersion: a.version, Data: data}
	if r.Method != http.MethodGet {
		v.Back = "/"
		if rq != nil && strings.HasPrefix(r.URL.Path, "/models/") {
			v.Back = r.URL.Path[:strings.LastIndex(r.URL.Path, "/")]
		}
	}
	names := map[console.Lang]string{console.English: "English", console.Chinese: "简体中文"}
	for _, l := range console.Langs() {
		v.Langs = append(v.Langs, langOption{Tag: string(l), Name: names[l], Current: l == cat.Lang()})
	}
	if rq != nil && rq.sess != nil {
		u := rq.sess.user
		v.User, v.CSRF = &u, rq.sess.csrf
		v.Nav = a.nav(cat, &u, r.URL.Path)
	} else {
		v.CSRF = a.readCookie(r, loginCookie)
	}
	return v
}

// render writes page (a template set) with data inside the layout.
func (a *API) render(w http.ResponseWriter, r *http.Request, rq *req, status int, page, title string, data any) error {
	v := a.newView(r, rq, title, data)
	if rq != nil && rq.sess != nil {
		v.Flash = a.sessions.takeFlash(rq.sess)
	}
	return a.renderView(w, status, page, v)
}

func (a *API) renderView(w http.ResponseWriter, status int, page string, v *view) error {
	t, ok := a.pages.sets[page]
	if !ok {
		return fmt.Errorf("console: no template %q", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("console: render %s: %w", page, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// fragment writes one named template of page without the layout (the
// live regions the script refreshes).
func (a *API) fragment(w http.ResponseWriter, r *http.Request, rq *req, page, name string, data any) error {
	t, ok := a.pages.sets[page]
	if !ok {
		return fmt.Errorf("console: no template %q", page)
	}
	var buf bytes.Buffer
	v := a.newView(r, rq, "", data)
	if err := t.ExecuteTemplate(&buf, name, v); err != nil {
		return fmt.Errorf("console: render %s/%s: %w", page, name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err := w.Write(buf.Bytes())
	return err
}

// renderError shows an error page (with the navigation when logged in).
func (a *API) renderError(w http.ResponseWriter, r *http.Request, rq *req, status int, msg string) {
	cat := a.catalog(r)
	if err := a.render(w, r, rq, status, "error", cat.T("error.title"), struct {
		Status  int
		Message string
	}{status, msg}); err != nil {
		a.log.Error("console: error page failed", "err", err)
		http.Error(w, msg, status)
	}
}
