package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DevPKI describes the files written by [GenerateDev].
type DevPKI struct {
	Dir     string
	CACert  string // <dir>/ca.crt
	CAKey   string // <dir>/ca.key
	Parties map[string]PartyFiles
	CA      *CA // the CA in memory, to issue more certificates
}

// PartyFiles are the paths of one party's certificates and keys.
type PartyFiles struct {
	ServerCert, ServerKey string // <dir>/<party>/server.{crt,key}
	ClientCert, ClientKey string // <dir>/<party>/client.{crt,key}
}

type devFile struct {
	path string
	data []byte
	perm fs.FileMode
}

// GenerateDev writes a development PKI under dir: ca.crt and ca.key, and for
// every party P the files P/server.crt, P/server.key, P/client.crt and
// P/client.key, all signed by the one development CA. Keys are written with
// mode 0600 and party directories with mode 0700.
//
// Server certificates cover localhost, 127.0.0.1, ::1, the party name and
// opts.Hosts, and carry the party URI; client certificates identify the party
// (see [CA.IssueClient]).
//
// GenerateDev refuses to overwrite any existing file unless opts.Force is
// set; in that case nothing is written and the error, which wraps
// [fs.ErrExist], names the file.
func GenerateDev(dir string, parties []string, opts DevOptions) (*DevPKI, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if len(parties) == 0 {
		return nil, errors.New("pki: no parties given")
	}
	p := &DevPKI{
		Dir:     dir,
		CACert:  filepath.Join(dir, "ca.crt"),
		CAKey:   filepath.Join(dir, "ca.key"),
		Parties: make(map[string]PartyFiles, len(parties)),
	}
	paths := []string{p.CACert, p.CAKey}
	for _, party := range parties {
		if err := CheckPartyName(party); err != nil {
			return nil, err
		}
		if _, dup := p.Parties[party]; dup {
			return nil, fmt.Errorf("pki: party %q listed twice", party)
		}
		pd := filepath.Join(dir, party)
		pf := PartyFiles{
			ServerCert: filepath.Join(pd, "server.crt"), ServerKey: filepath.Join(pd, "server.key"),
			ClientCert: filepath.Join(pd, "client.crt"), ClientKey: filepath.Join(pd, "client.key"),
		}
		p.Parties[party] = pf
		paths = append(paths, pf.ServerCert, pf.ServerKey, pf.ClientCert, pf.ClientKey)
	}
	// Check before generating any key (RSA 4096 is slow) and writing anything.
	if !o.Force {
		for _, path := range paths {
			if _, err := os.Lstat(path); err == nil {
				return nil, existsError(path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("pki: %w", err)
			}
		}
	}

	if p.CA, err = newCA("fedrisk development CA", o); err != nil {
		return nil, err
	}
	caKey, err := keyPEM(p.CA.key)
	if err != nil {
		return nil, err
	}
	files := []devFile{{p.CACert, p.CA.CertPEM(), 0o644}, {p.CAKey, caKey, 0o600}}
	for _, party := range parties {
		pf := p.Parties[party]
		hosts := append(append(loopbackHosts(), party), o.Hosts...)
		srv, err := p.CA.issueServer(party, hosts)
		if err != nil {
			return nil, err
		}
		cli, err := p.CA.IssueClient(party)
		if err != nil {
			return nil, err
		}
		srvKey, err := keyPEM(srv.PrivateKey)
		if err != nil {
			return nil, err
		}
		cliKey, err := keyPEM(cli.PrivateKey)
		if err != nil {
			return nil, err
		}
		files = append(files,
			devFile{pf.ServerCert, pemBlock("CERTIFICATE", srv.Certificate[0]), 0o644},
			devFile{pf.ServerKey, srvKey, 0o600},
			devFile{pf.ClientCert, pemBlock("CERTIFICATE", cli.Certificate[0]), 0o644},
			devFile{pf.ClientKey, cliKey, 0o600},
		)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	for _, party := range parties {
		pd := filepath.Join(dir, party)
		if err := os.MkdirAll(pd, 0o700); err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		if err := os.Chmod(pd, 0o700); err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
	}
	for _, f := range files {
		if err := writeFile(f, o.Force); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// writeFile writes f with exactly f.perm. Without force it never replaces an
// existing file (O_EXCL, so also not one created since the check above).
func writeFile(f devFile, force bool) (err error) {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	fh, err := os.OpenFile(f.path, flag, f.perm)
	if errors.Is(err, fs.ErrExist) {
		return existsError(f.path)
	}
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	defer func() {
		if cerr := fh.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("pki: %w", cerr)
		}
	}()
	// An overwritten file keeps its old mode; tighten it before writing a key.
	if err := fh.Chmod(f.perm); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := fh.Write(f.data); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func existsError(path string) error {
	return fmt.Errorf("pki: refusing to overwrite %s (use Force to replace it): %w", path, fs.ErrExist)
}
