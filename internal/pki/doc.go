// Package pki creates and loads the certificates that fedrisk nodes use to talk
// to each other over mutual TLS, and tells a node which party is on the other
// end of a connection.
//
// # Party identity
//
// Every party (for example "bank" or "partner") is named by a lowercase DNS
// label (see [CheckPartyName]). A party's client certificate carries the URI SAN
// fedrisk://party/<name> and, for older tooling, the same name as CommonName.
// [PeerParty] reads that identity from a verified peer certificate, and
// [Allowlist] admits only the parties registered with a node, each only
// with a certificate that chains to that party's own trust anchor (and
// carries a pinned key, when its SPKI is pinned): one institution's CA can
// never speak for another.
//
// # Development and production
//
// [GenerateDev] writes a complete development PKI (replacing the openssl steps
// of the old runbook): one CA that signs a server and a client certificate for
// every party. Real deployments are different: each institution runs its own
// CA, keeps its CA key to itself and gives its CA certificate to the other
// parties. A node's TLS layer verifies against the union of those CA
// certificates ([LoadCertificates] reads several files), and its
// [NewBoundAllowlist] binds each party to its own CA: a party's calls are
// accepted, and its servers trusted ([Allowlist.ClientConfig]), only with
// certificates from that CA.
//
// [NewCA] and its Issue methods make the same certificates in memory, for tests
// elsewhere in the project.
//
// The package is built on crypto/x509 and crypto/tls alone: issuing a handful
// of certificates needs nothing a dedicated CA library (such as smallstep's)
// would add. All randomness comes from crypto/rand. Nothing here logs, and no
// error message contains key material.
package pki
