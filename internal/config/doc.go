package config

import (
	"fmt"
	"strings"
)

// MarkdownTable renders every setting as the configuration table of the
// README (a test keeps the two in step).
func MarkdownTable() string {
	d := Default()
	var b strings.Builder
	b.WriteString("| key | environment | flag | default | meaning; accepted values |\n|---|---|---|---|---|\n")
	code := func(s string) string {
		if s == "" {
			return ""
		}
		return "`" + s + "`"
	}
	for _, s := range Settings() {
		v := s.get(&d)
		if v == "" {
			v = "(empty)"
		}
		flag := ""
		if s.Flag != "" {
			flag = "--" + s.Flag
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | `%s` | %s; %s |\n", s.Key, code(s.Env), code(flag), v, s.Usage, strings.ReplaceAll(s.Accepted, "|", "\\|"))
	}
	b.WriteString("| `peers` | `FEDRISK_PEERS` (`name=url[;ca_file=PATH][;spki_sha256=HEX],...`) | `--peer name=url[;ca_file=PATH][;spki_sha256=HEX]` (repeatable) | (none) | other parties' nodes: a list of `{name, url, psi_url, consent_url, serving_url, ca_file, spki_sha256}` in the file; `ca_file`: the peer's own CA (a certificate naming it must chain to it; default tls.ca_file); `spki_sha256`: SHA-256 pins of the keys it may present |\n")
	return b.String()
}
