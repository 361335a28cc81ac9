package consent

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Receipt is the consent receipt in the Kantara Consent Receipt v1.1 shape
// (field names as in the specification), carrying the ISO/IEC 27560
// record's essentials. It is signed as a JWS (typ consent-receipt+jwt) with
// the consent service's current key, so anyone holding the JWKS can verify
// it offline. It names the subject only by pseudonym.
type Receipt struct {
	Version          string              `json:"version"` // "KI-CR-v1.1.0"
	Jurisdiction     string              `json:"jurisdiction"`
	ConsentTimestamp int64               `json:"consentTimestamp"`
	CollectionMethod string              `json:"collectionMethod"`
	ConsentReceiptID string              `json:"consentReceiptID"`
	Language         string              `json:"language"`
	PIIPrincipalID   string              `json:"piiPrincipalId"`
	PIIControllers   []ReceiptController `json:"piiControllers"`
	PolicyURL        string              `json:"policyUrl,omitempty"`
	Services         []ReceiptService    `json:"services"`
	Sensitive        bool                `json:"sensitive"`
	SPICat           []string            `json:"spiCat"`
	// ISO/IEC 27560 record fields beyond the Kantara set.
	PolicyVersion int       `json:"policyVersion"`
	ExpiresAt     time.Time `json:"expiresAt"`
	Collector     string    `json:"collector"`
	jwt.RegisteredClaims
}

// ReceiptController names a PII controller.
type ReceiptController struct {
	PIIController string `json:"piiController"`
	Contact       string `json:"contact,omitempty"`
	Email         string `json:"email,omitempty"`
	OnBehalf      bool   `json:"onBehalf"`
}

// ReceiptService is one service and its purposes.
type ReceiptService struct {
	Service  string           `json:"service"`
	Purposes []ReceiptPurpose `json:"purposes"`
}

// ReceiptPurpose is one purpose the subject consented to.
type ReceiptPurpose struct {
	Purpose              string   `json:"purpose"`
	PurposeCategory      []string `json:"purposeCategory"`
	ConsentType          string   `json:"consentType"` // EXPLICIT
	PIICategory          []string `json:"piiCategory"`
	PrimaryPurpose       bool     `json:"primaryPurpose"`
	Termination          string   `json:"termination"`
	ThirdPartyDisclosure bool     `json:"thirdPartyDisclosure"`
	ThirdPartyName       string   `json:"thirdPartyName"`
}

func (s *Service) signReceipt(ctx context.Context, c Consent, p Purpose) (string, error) {
	r := Receipt{
		Version: "KI-CR-v1.1.0", Jurisdiction: "CN", ConsentTimestamp: c.GrantedAt.Unix(),
		CollectionMethod: c.Evidence.Channel, ConsentReceiptID: c.ID, Language: "zh-CN",
		PIIPrincipalID: c.SubjectRef,
		PIIControllers: []ReceiptController{{PIIController: s.cfg.Controller.Name, Contact: s.cfg.Controller.Contact, Email: s.cfg.Controller.Email}},
		PolicyURL:      p.PolicyURL,
		Services: []ReceiptService{{Service: "fedrisk", Purposes: []ReceiptPurpose{{
			Purpose: c.Purpose, PurposeCategory: []string{p.Description}, ConsentType: "EXPLICIT",
			PIICategory: c.Categories, PrimaryPurpose: true,
			Termination:          "expires " + c.ExpiresAt.Format(time.RFC3339) + " or on withdrawal",
			ThirdPartyDisclosure: true, ThirdPartyName: c.Party,
		}}}},
		SPICat:        []string{},
		PolicyVersion: c.PolicyVersion, ExpiresAt: c.ExpiresAt, Collector: c.Evidence.Collector,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: c.SubjectRef, ID: c.ID, IssuedAt: jwt.NewNumericDate(c.GrantedAt),
		},
	}
	signed, err := s.sign(ctx, ReceiptType, r)
	if err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	return signed, nil
}

// VerifyReceipt checks a receipt's signature with key lookup (for example
// a JWKS) and returns its contents.
func VerifyReceipt(receipt string, key func(kid string) (*rsa.PublicKey, error)) (Receipt, error) {
	var r Receipt
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation()).ParseWithClaims(receipt, &r, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != ReceiptType {
			return nil, fmt.Errorf("typ %q is not %q", typ, ReceiptType)
		}
		kid, _ := t.Header["kid"].(string)
		return key(kid)
	})
	if err != nil {
		return r, errors.Join(ErrInvalid, fmt.Errorf("receipt: %w", err))
	}
	return r, nil
}
