package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Inputs are the sources Load combines, lowest precedence first.
type Inputs struct {
	FileName string                      // shown in errors; "" when there is no file
	File     []byte                      // YAML; nil when there is no file
	Env      func(string) (string, bool) // os.LookupEnv in main; nil for none
	Flags    map[string]string           // setting key -> value, only flags the user set
	Peers    []string                    // --peer name=url values, replacing file and env peers
}

// StrictSource is the source of auth_required when strict security mode
// turned it on.
const StrictSource = "security_mode=strict"

// Loaded is an effective configuration and where each value came from.
type Loaded struct {
	Config
	Sources map[string]string // setting key -> "default", "file NAME", "env VAR" or "flag --NAME"
}

// Load builds the effective configuration: defaults < file < env < flags.
func Load(in Inputs) (*Loaded, error) {
	l := &Loaded{Config: Default(), Sources: map[string]string{}}
	settings := Settings()
	byKey := make(map[string]Setting, len(settings))
	for _, s := range settings {
		byKey[s.Key] = s
		l.Sources[s.Key] = "default"
	}
	l.Sources["peers"] = "default"

	if in.File != nil {
		src := "file " + in.FileName
		values, peers, err := flattenYAML(in.File)
		if err != nil {
			return nil, &Error{Key: "(file)", Source: src, Value: in.FileName, Err: err, Accepted: "a YAML mapping of the keys listed by `fedrisk config print`"}
		}
		for _, kv := range values {
			s, ok := byKey[kv.key]
			if !ok {
				return nil, &Error{Key: kv.key, Source: src, Value: kv.value, Err: errors.New("unknown key"), Accepted: "one of " + strings.Join(keys(settings), ", ") + ", peers"}
			}
			if err := s.apply(&l.Config, kv.value, src); err != nil {
				return nil, err
			}
			l.Sources[s.Key] = src
		}
		if peers != nil {
			l.Peers = peers
			l.Sources["peers"] = src
		}
	}
	if in.Env != nil {
		for _, s := range settings {
			if s.Env == "" {
				continue
			}
			v, ok := in.Env(s.Env)
			if !ok {
				continue
			}
			src := "env " + s.Env
			if err := s.apply(&l.Config, v, src); err != nil {
				return nil, err
			}
			l.Sources[s.Key] = src
		}
		if v, ok := in.Env("FEDRISK_PEERS"); ok {
			peers, err := ParsePeers(v)
			if err != nil {
				return nil, &Error{Key: "peers", Source: "env FEDRISK_PEERS", Value: redactPeers(v), Err: err, Accepted: "name=url[;ca_file=PATH][;spki_sha256=HEX][,name=url...]"}
			}
			l.Peers = peers
			l.Sources["peers"] = "env FEDRISK_PEERS"
		}
	}
	flagKeys := make([]string, 0, len(in.Flags))
	for k := range in.Flags {
		flagKeys = append(flagKeys, k)
	}
	sort.Strings(flagKeys)
	for _, k := range flagKeys {
		s, ok := byKey[k]
		if !ok {
			return nil, fmt.Errorf("config: no setting %q", k)
		}
		src := "flag --" + s.Flag
		if err := s.apply(&l.Config, in.Flags[k], src); err != nil {
			return nil, err
		}
		l.Sources[k] = src
	}
	if len(in.Peers) > 0 {
		var peers []Peer
		for _, v := range in.Peers {
			p, err := ParsePeers(v)
			if err != nil {
				return nil, &Error{Key: "peers", Source: "flag --peer", Value: redactPeers(v), Err: err, Accepted: "name=url[;ca_file=PATH][;spki_sha256=HEX]"}
			}
			peers = append(peers, p...)
		}
		l.Peers = peers
		l.Sources["peers"] = "flag --peer"
	}
	// Strict security mode trusts no loopback caller: AUTH_REQUIRED left at
	// its default is turned on; set to false, it contradicts strict.
	if l.SecurityMode == "strict" && !l.AuthRequired {
		if src := l.Sources["auth_required"]; src != "default" {
			return nil, &Error{Key: "auth_required", Source: src, Value: "false",
				Accepted: "true with security_mode=strict (strict turns loopback trust off); leave AUTH_REQUIRED unset or set it to true"}
		}
		l.AuthRequired = true
		l.Sources["auth_required"] = StrictSource
	}
	if err := l.Validate(); err != nil {
		var ce *Error
		if errors.As(err, &ce) && ce.Source == "" {
			ce.Source = l.Sources[strings.SplitN(ce.Key, "[", 2)[0]]
		}
		return nil, err
	}
	return l, nil
}

func keys(ss []Setting) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Key
	}
	return out
}

type keyValue struct{ key, value string }

// flattenYAML turns a YAML mapping into dotted keys with scalar values.
// "services" may be a list; "peers" is a list of {name, url}.
func flattenYAML(data []byte) ([]keyValue, []Peer, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	if len(root.Content) == 0 {
		return nil, nil, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("line %d: the file must be a mapping of keys to values", doc.Line)
	}
	var out []keyValue
	var peers []Peer
	var walk func(prefix string, n *yaml.Node) error
	walk = func(prefix string, n *yaml.Node) error {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			switch {
			case key == "peers":
				p, err := decodePeers(v)
				if err != nil {
					return err
				}
				peers = p
			case v.Kind == yaml.MappingNode:
				if err := walk(key, v); err != nil {
					return err
				}
			case v.Kind == yaml.SequenceNode && key == "services":
				var items []string
				for _, item := range v.Content {
					items = append(items, item.Value)
				}
				out = append(out, keyValue{key, strings.Join(items, ",")})
			case v.Kind == yaml.ScalarNode:
				out = append(out, keyValue{key, v.Value})
			default:
				return fmt.Errorf("line %d: %s must be a single value", v.Line, key)
			}
		}
		return nil
	}
	if err := walk("", doc); err != nil {
		return nil, nil, err
	}
	return out, peers, nil
}

func decodePeers(v *yaml.Node) ([]Peer, error) {
	var raw []struct {
		Name       string     `yaml:"name"`
		URL        string     `yaml:"url"`
		PSIURL     string     `yaml:"psi_url"`
		ConsentURL string     `yaml:"consent_url"`
		ServingURL string     `yaml:"serving_url"`
		CAFile     string     `yaml:"ca_file"`
		SPKI       stringList `yaml:"spki_sha256"`
	}
	if err := v.Decode(&raw); err != nil {
		return nil, fmt.Errorf("line %d: peers must be a list of {name, url, psi_url, consent_url, serving_url, ca_file, spki_sha256}: %w", v.Line, err)
	}
	peers := make([]Peer, 0, len(raw))
	for _, r := range raw {
		p := Peer{Name: r.Name, URL: r.URL, CAFile: r.CAFile, SPKI: r.SPKI}
		for svc, u := range map[string]string{ServicePSI: r.PSIURL, ServiceConsent: r.ConsentURL, ServiceServing: r.ServingURL} {
			if u != "" {
				if p.ServiceURLs == nil {
					p.ServiceURLs = map[string]string{}
				}
				p.ServiceURLs[svc] = u
			}
		}
		peers = append(peers, p)
	}
	return peers, nil
}

// redactPeers hides the secrets of the URLs in a peers value
// (name=url;option=...,...).
func redactPeers(v string) string {
	items := strings.Split(v, ",")
	for i, item := range items {
		name, rest, ok := strings.Cut(item, "=")
		if !ok {
			continue
		}
		fields := strings.Split(rest, ";")
		fields[0] = RedactURL(strings.TrimSpace(fields[0]))
		items[i] = name + "=" + strings.Join(fields, ";")
	}
	return strings.Join(items, ",")
}

// stringList is a YAML list of strings, or one string.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = stringList{n.Value}
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = s
	return nil
}

// Print writes the effective configuration as YAML that `fedrisk serve
// --config` accepts, secrets redacted, each line commented with its source.
func (l *Loaded) Print(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# effective configuration (flag > env > file > default); secrets redacted\n")
	group := ""
	for _, s := range Settings() {
		name := s.Key
		indent := ""
		if i := strings.IndexByte(s.Key, '.'); i >= 0 {
			g := s.Key[:i]
			if g != group {
				fmt.Fprintf(&b, "%s:\n", g)
				group = g
			}
			name, indent = s.Key[i+1:], "  "
		} else {
			group = ""
		}
		fmt.Fprintf(&b, "%s%s: %s  # %s", indent, name, yamlScalar(s.get(&l.Config)), l.Sources[s.Key])
		if s.Env != "" {
			fmt.Fprintf(&b, " (env %s)", s.Env)
		}
		b.WriteByte('\n')
	}
	if len(l.Peers) == 0 {
		fmt.Fprintf(&b, "peers: []  # %s\n", l.Sources["peers"])
	} else {
		fmt.Fprintf(&b, "peers:  # %s\n", l.Sources["peers"])
		for _, p := range l.Peers {
			fmt.Fprintf(&b, "  - name: %s\n", yamlScalar(p.Name))
			if p.URL != "" {
				fmt.Fprintf(&b, "    url: %s\n", yamlScalar(RedactURL(p.URL)))
			}
			for _, svc := range AllServices() {
				if u := p.ServiceURLs[svc]; u != "" {
					fmt.Fprintf(&b, "    %s_url: %s\n", svc, yamlScalar(RedactURL(u)))
				}
			}
			if p.CAFile != "" {
				fmt.Fprintf(&b, "    ca_file: %s\n", yamlScalar(p.CAFile))
			}
			if len(p.SPKI) > 0 {
				b.WriteString("    spki_sha256:\n")
				for _, pin := range p.SPKI {
					fmt.Fprintf(&b, "      - %s\n", yamlScalar(pin))
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// yamlScalar quotes a value unless YAML would read it back as the same string.
func yamlScalar(v string) string {
	if v == "" {
		return `""`
	}
	if _, err := strconv.ParseBool(v); err == nil {
		return v
	}
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return v
	}
	return strconv.Quote(v)
}
