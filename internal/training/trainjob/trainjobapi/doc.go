// Package trainjobapi is the HTTP side of training jobs: the client API
// (/train/v1/jobs), the peer API a host serves to its guest, and the
// guest's Client, a trainjob.Session over that peer API.
//
// # Transport
//
// The guest opens a session at the host (POST /train/v1/peer/sessions,
// body OpenRequest); messages then flow guest→host as POST
// .../messages/{seq} and host→guest as long-poll GET .../messages/{seq}.
// Sequence numbers make every call idempotent: a retried POST of a message
// the host already has is acknowledged and dropped, and a GET of sequence
// n both fetches message n and acknowledges every message before it.
// Every message is bounded by hetero.MaxMessageBytes (refused before it is
// read in full), decoded on arrival, and every Send and Recv has a
// deadline.
//
// The peer API identifies the caller by its verified mutual-TLS client
// certificate (pki.PeerParty) and admits configured peers only; a node
// without TLS admits loopback callers naming themselves in the
// X-Fedrisk-Party header, as the PSI peer API does.
package trainjobapi
