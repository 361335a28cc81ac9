// Package console is what the web console shows, without any HTTP: messages
// in two languages, page view models, and charts as geometry.
//
// It holds the message catalogues (English and Simplified Chinese) and the
// language a browser asks for, the view models of the pages, and the shaping
// of numbers into charts — line charts of training curves, bar charts of
// feature importance and reason codes, the histogram of remaining privacy
// budgets — as geometry the templates draw as inline SVG.
//
// It also decodes the outside documents the pages show: model cards and
// halves (JSON of any shape, flattened or read for feature weights),
// consent receipts (a JWS, verified against the consent service's JWKS),
// Prometheus's alert list and metric exposition. Every decoder bounds what
// it reads and never panics on bad input (each has a fuzz test).
//
// The charts are drawn on the server because they then need no script (the
// console's Content-Security-Policy allows only its own small script),
// work with scripting off, are testable in Go, and carry their numbers in
// a table beside them for screen readers.
package console
