package consent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// hostRefLabel separates host references from every other use of the key.
const hostRefLabel = "fedrisk/host-ref/v1"

// HostRef is the reference under which the guest names a data subject to
// host party: HMAC-SHA256 under the federation's shared subject_ref_key of
// the host's name and the normalised identifier (see NormalizeIdentifier),
// base64url without padding.
//
// A host computes the same reference for its own customers when it loads
// their features, so the guest can ask for a subject's partial score
// without sending the identifier. Each host gets its own reference; a host
// can tell which of its own customers is being scored, which the subject's
// consent to that host covers. Consent tokens carry the reference (claim
// href) so a host can check that a token was issued for the subject it is
// asked about, and hosts keep privacy budgets per href, a key the guest
// cannot vary. The token's sub is per host too (see tokenSubject).
func HostRef(key []byte, hostParty, normalisedID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(hostRefLabel))
	m.Write([]byte{0})
	m.Write([]byte(hostParty))
	m.Write([]byte{0})
	m.Write([]byte(normalisedID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// HostRefOf returns the function that maps a raw identifier to its
// reference at hostParty (normalised first, see NormalizeIdentifier): what
// a host applies to its customers' identifiers when it loads their
// features (features.RekeyCSV).
func HostRefOf(key []byte, hostParty string) func(id string) (string, error) {
	return func(id string) (string, error) {
		n, err := NormalizeIdentifier(id)
		if err != nil {
			return "", err
		}
		return HostRef(key, hostParty, n), nil
	}
}

// EqualHostRef compares two host references in constant time.
func EqualHostRef(a, b string) bool {
	return len(a) > 0 && hmac.Equal([]byte(a), []byte(b))
}

// hostRef returns the href claim of a token for consent c: empty when the
// service has no subject reference key. The identifier is decrypted for the
// moment of the computation only.
func (s *Service) hostRef(ctx context.Context, c Consent) (string, error) {
	if len(s.cfg.SubjectRefKey) == 0 {
		return "", nil
	}
	subj, err := s.store.GetSubject(ctx, c.SubjectID)
	if err != nil {
		return "", err
	}
	if subj.DeletedAt != nil {
		return "", ErrSubjectDeleted
	}
	plain, err := s.crypto.Decrypt(ctx, subj.DataKeyID, subj.IdentifierEnc, subjectAAD(subj.ID))
	if err != nil {
		return "", fmt.Errorf("decrypt identifier: %w", err)
	}
	return HostRef(s.cfg.SubjectRefKey, c.Party, string(plain)), nil
}
