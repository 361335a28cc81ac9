package console

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/text/language"
)

// Lang is a language the console speaks.
type Lang string

// The console's languages.
const (
	English Lang = "en"
	Chinese Lang = "zh-CN"
)

// Langs lists the languages, the default first.
func Langs() []Lang { return []Lang{English, Chinese} }

// ParseLang accepts a language the console speaks, by its exact tag.
func ParseLang(s string) (Lang, bool) {
	l := Lang(s)
	return l, slices.Contains(Langs(), l)
}

// MaxAcceptLanguage bounds the Accept-Language header Negotiate reads.
const MaxAcceptLanguage = 1024

// Negotiate picks the language of an Accept-Language header: Chinese for
// any zh variant the browser prefers over English, else English.
func Negotiate(acceptLanguage string) Lang {
	if len(acceptLanguage) > MaxAcceptLanguage { // keep whole entries
		acceptLanguage = acceptLanguage[:MaxAcceptLanguage]
		if i := strings.LastIndexByte(acceptLanguage, ','); i > 0 {
			acceptLanguage = acceptLanguage[:i]
		}
	}
	tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(tags) == 0 {
		return English
	}
	m := language.NewMatcher([]language.Tag{language.English, language.SimplifiedChinese})
	_, i, conf := m.Match(tags...)
	if i == 1 && conf != language.No {
		return Chinese
	}
	return English
}

// Catalog holds the messages of one language.
type Catalog struct {
	lang Lang
	msgs map[string]string
}

// Catalogs holds every language's catalogue.
type Catalogs struct{ by map[Lang]*Catalog }

// NewCatalogs builds the catalogues from the message table.
func NewCatalogs() *Catalogs {
	en, zh := map[string]string{}, map[string]string{}
	for k, m := range messages() {
		en[k], zh[k] = m.en, m.zh
	}
	return &Catalogs{by: map[Lang]*Catalog{English: {lang: English, msgs: en}, Chinese: {lang: Chinese, msgs: zh}}}
}

// For returns the catalogue of l (English for an unknown language).
func (c *Catalogs) For(l Lang) *Catalog {
	if cat, ok := c.by[l]; ok {
		return cat
	}
	return c.by[English]
}

// Lang is the catalogue's language.
func (c *Catalog) Lang() Lang { return c.lang }

// Has reports whether key has a message.
func (c *Catalog) Has(key string) bool { _, ok := c.msgs[key]; return ok }

// Keys returns every key, sorted.
func (c *Catalog) Keys() []string {
	keys := make([]string, 0, len(c.msgs))
	for k := range c.msgs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// T returns the message of key; a missing key is returned as is (a test
// keeps the templates and the table in step).
func (c *Catalog) T(key string) string {
	if m, ok := c.msgs[key]; ok {
		return m
	}
	return key
}

// F formats the message of key with args (fmt verbs).
func (c *Catalog) F(key string, args ...any) string { return fmt.Sprintf(c.T(key), args...) }

// S translates a value of a known set, e.g. S("status", "active") looks up
// "status.active"; a value the table does not know is shown as it is.
func (c *Catalog) S(set, value string) string {
	if m, ok := c.msgs[set+"."+value]; ok {
		return m
	}
	return value
}

// Time formats t in UTC, the same in both languages (operators compare
// times with logs, which are in UTC).
func (c *Catalog) Time(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// Duration formats a duration in seconds for people.
func (c *Catalog) Duration(seconds float64) string {
	if seconds <= 0 {
		return "—"
	}
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Int formats n with thousands separators (the same in both languages).
func Int(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
